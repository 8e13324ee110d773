"""Build (or reuse) everything DICE needs in the task world, cached by content.

Stages, each in its own folder ``<cache>/world/<stage>-<key>/`` whose key hashes the settings that
determine it, the key of the stage it builds on, the versions of torch/transformers/trl/tokenizers
and the source of the dicekit modules involved — so a second run reuses every stage, and changing
e.g. the π_0 learning rate rebuilds π_0 only:

1. ``data``:    the tokenizer (trained on world text) and the prompt files of the four splits —
                 ``sft.jsonl`` (prompt_id, prompt, response: demonstrations of mixed quality),
                 ``offline_prompts.jsonl``, ``dice_prompts.jsonl``, ``eval_prompts.jsonl``
                 (prompt_id, prompt, family; eval also ``reference``: a fixed demonstration that win
                 rates are measured against, as AlpacaEval's fixed reference outputs).
2. ``pi_m1``:   π_{-1}, a small Llama trained from scratch by SFT (dicekit.world.sft).
3. ``offline``: ``offline_pairs.jsonl`` (prompt_id, prompt, chosen, rejected — text) from
                 ``offline_samples`` π_{-1} samples per offline prompt ranked by the simulated
                 annotators; ``offline_pairs.parquet`` the same pairs as exact sampled token IDs;
                 ``heldout_pairs.jsonl``: two π_{-1} samples per eval prompt, one annotator label and
                 both oracle qualities (for implicit-reward accuracy).
4. ``pi_0``:    π_0 = DPO of π_{-1} on the offline pairs through dicekit.round.train.train_dpo — the same
                 training stage as a DICE round — with π_{-1}'s log-probs as the reference.

Every stage folder is written aside and renamed, so a folder that exists is complete.

Why these settings (measured with the demo's seed 0 unless said otherwise; the demo prints the same
diagnostics for any seed):

* π_{-1}: a 116k-parameter Llama (hidden 64, 2 layers, 4 heads) trained 3,000 SFT steps — competent
  but imperfect (oracle quality 0.64 sampled at T = 1, 0.78 greedy; demonstrations 0.74). Larger
  models did not fit the CPU budget; 2 heads instead of 4 left the antonym family at 0.38–0.55
  across seeds.
* Offline pairs: best vs worst of 4 π_{-1} samples as ranked by an annotator, so only 12% are
  oracle ties (pairs of 2 random samples: ~40%) and the labels agree with the oracle on 99% of the
  rest; the annotators' verbosity bias still makes chosen responses ~7 characters longer.
* π_0: light DPO (lr 2e-4, 2 epochs, SFT term weight 1 on the chosen response). Its implicit reward
  agrees with the oracle on 0.64–0.67 of the pairs of its *own* samples with different quality;
  heavier training (lr 5e-4, 4 epochs) drove that below chance (0.43) and no SFT term lowered it
  (0.61): the selection effect of docs/method-notes.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.data import read_jsonl
from dicekit.progress import say
from dicekit.world import tasks
from dicekit.world.annotators import Annotators
from dicekit.world.oracle import quality


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and settings of the world and its tiny-model recipe (the demo's defaults)."""

    seed: int = 0
    # splits
    sft_examples: int = 4000  # demonstrations (prompts drawn with repetition from the SFT split)
    offline_prompts: int = 600
    offline_samples: int = 4  # π_{-1} responses per offline prompt, ranked by an annotator
    dice_prompts: int = 400
    eval_prompts: int = 300
    # demonstrations (SFT data): per-decision error rate, filler probabilities
    demo_error: float = 0.25
    demo_opener: float = 0.5
    demo_closer: float = 0.5
    # simulated annotators: P(a ≻ b) = σ((q_a − q_b)/τ + λ·(len_a − len_b)/s)
    annotator_tau: float = 0.1
    annotator_verbosity: float = 1.0
    annotator_length_scale: float = 20.0
    # π_{-1}
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    sft_steps: int = 3000
    sft_batch_size: int = 32
    sft_learning_rate: float = 5e-3
    # sampling π_{-1} for the offline and held-out pairs
    temperature: float = 1.0
    max_new_tokens: int = 40
    # π_0: DPO on the offline pairs (loss "sigmoid" + weighted "sft" on the chosen response); light on
    # purpose — see the module docstring (also the round settings of dicekit.commands.demo)
    pi0_beta: float = 0.1
    pi0_learning_rate: float = 2e-4
    pi0_epochs: float = 2.0
    pi0_batch_size: int = 32
    pi0_sft_weight: float = 1.0

    def annotators(self) -> Annotators:
        return Annotators(self.annotator_tau, self.annotator_verbosity, self.annotator_length_scale, self.seed)


@dataclass(frozen=True)
class World:
    """Paths of a built world (all inside the cache)."""

    root: Path
    tokenizer: Path
    sft: Path
    offline_prompts: Path
    dice_prompts: Path
    eval_prompts: Path
    pi_m1: Path
    offline_pairs: Path
    offline_pairs_ids: Path
    heldout_pairs: Path
    pi_0: Path
    timings: dict


_STAGE_FIELDS = {
    "data": ("seed", "sft_examples", "offline_prompts", "dice_prompts", "eval_prompts",
             "demo_error", "demo_opener", "demo_closer"),
    "pi_m1": ("hidden_size", "num_hidden_layers", "num_attention_heads", "sft_steps", "sft_batch_size", "sft_learning_rate"),
    "offline": ("offline_samples", "annotator_tau", "annotator_verbosity", "annotator_length_scale",
                "temperature", "max_new_tokens"),
    "pi_0": ("pi0_beta", "pi0_learning_rate", "pi0_epochs", "pi0_batch_size", "pi0_sft_weight"),
}
_STAGE_SOURCES = {
    "data": ("world/tasks.py", "world/tokenizer.py"),
    "pi_m1": ("world/sft.py", "models.py"),
    "offline": ("world/annotators.py", "world/oracle.py", "round/generate.py", "round/sampling.py"),
    "pi_0": ("round/train.py", "round/score.py", "core/objectives.py"),
}


def cache_root() -> Path:
    """``$DICEKIT_CACHE/world`` or ``~/.cache/dicekit/world``."""
    return rundir.cache_dir("world")


def _versions() -> str:
    from importlib.metadata import version

    return ",".join(f"{p}={version(p)}" for p in ("torch", "transformers", "trl", "tokenizers"))


def stage_keys(cfg: WorldConfig) -> dict[str, str]:
    """The content key of each stage (chained: a stage's key includes its parent's)."""
    src = Path(__file__).resolve().parent.parent
    keys, parent = {}, _versions()
    for stage, fields in _STAGE_FIELDS.items():
        h = hashlib.sha256(parent.encode())
        h.update(json.dumps({f: getattr(cfg, f) for f in fields}, sort_keys=True).encode())
        for rel in _STAGE_SOURCES[stage]:
            h.update((src / rel).read_bytes())
        keys[stage] = parent = f"{stage}-{h.hexdigest()[:16]}"
    return keys


# ----------------------------------------------------------------------------- stages


def build_data(cfg: WorldConfig, out: Path) -> None:
    from dicekit.world.tokenizer import train_tokenizer

    rng = np.random.default_rng([cfg.seed, 11])
    style = tasks.DemoStyle(cfg.demo_error, cfg.demo_opener, cfg.demo_closer)
    with rundir.atomic_path(out) as tmp:
        tmp.mkdir()
        sft_rows = []
        for t in tasks.sample_tasks("sft", cfg.sft_examples, cfg.seed, distinct=False):
            sft_rows.append({"prompt_id": t.prompt_id, "prompt": t.prompt, "response": tasks.demonstration(t, rng, style)})
        rundir.write_jsonl(tmp / "sft.jsonl", sft_rows)
        for split, n in (("offline", cfg.offline_prompts), ("dice", cfg.dice_prompts)):
            rundir.write_jsonl(tmp / f"{split}_prompts.jsonl",
                   [{"prompt_id": t.prompt_id, "prompt": t.prompt, "family": t.family}
                    for t in tasks.sample_tasks(split, n, cfg.seed)])
        ref_rng = np.random.default_rng([cfg.seed, 13])
        rundir.write_jsonl(tmp / "eval_prompts.jsonl",
               [{"prompt_id": t.prompt_id, "prompt": t.prompt, "family": t.family,
                 "reference": tasks.demonstration(t, ref_rng, style)} for t in tasks.sample_tasks("eval", cfg.eval_prompts, cfg.seed)])
        texts = tasks.vocabulary_text() + [r["prompt"] for r in sft_rows] + [r["response"] for r in sft_rows]
        train_tokenizer(texts).save_pretrained(str(tmp / "tokenizer"))


def build_pi_m1(cfg: WorldConfig, data: Path, out: Path, quiet: bool) -> dict:
    from transformers import AutoTokenizer

    from dicekit.world.sft import ModelSpec, SFTSpec, train_sft

    rows = read_jsonl(data / "sft.jsonl")
    tok = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    spec = ModelSpec(hidden_size=cfg.hidden_size, intermediate_size=3 * cfg.hidden_size,
                     num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads)
    sft = SFTSpec(steps=cfg.sft_steps, batch_size=cfg.sft_batch_size, learning_rate=cfg.sft_learning_rate, seed=cfg.seed)
    work = out.parent / f".{out.name}.work"
    info = train_sft(tok, [r["prompt"] for r in rows], [r["response"] for r in rows], out, spec, sft, work, quiet=quiet)
    shutil.rmtree(work, ignore_errors=True)
    return info


def sample_policy(model_dir: Path, prompts: list[dict], work: Path, *, seed: int, round_: int, k: int,
                  temperature: float, max_new_tokens: int, quiet: bool) -> pd.DataFrame:
    """K samples per prompt from a model folder (dicekit.round.generate, exact token IDs kept)."""
    from dicekit.round.generate import generate_samples
    from dicekit.models import load_model, prompt_ids, stop_token_ids

    model, tok = load_model(str(model_dir))
    df = pd.DataFrame({"prompt_id": [p["prompt_id"] for p in prompts], "prompt": [p["prompt"] for p in prompts]})
    df["prompt_ids"] = [prompt_ids(tok, p) for p in df["prompt"]]
    return generate_samples(model, tok, stop_token_ids(model, tok), df, work, seed=seed, round_=round_,
                            samples_per_prompt=k, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_p=1.0, batch_size=256, quiet=quiet)


def label_pairs(ann, samples: pd.DataFrame, extra: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """Best-vs-worst pairs by the annotators' round-robin wins among each prompt's samples (in
    ``samples``' order): (text rows prompt_id/prompt/chosen/rejected, plus ``<col>_chosen`` /
    ``<col>_rejected`` for each column in ``extra``; token-ID rows prompt_ids/chosen_ids/rejected_ids)."""
    pairs, id_rows = [], []
    for pid, group in samples.groupby("prompt_id", sort=False):
        group = group.reset_index(drop=True)
        pick = ann.best_and_worst(group["prompt"][0], list(group["response"]), key=(pid,))
        if pick is None:
            continue
        c, r = group.iloc[pick[0]], group.iloc[pick[1]]
        pairs.append({"prompt_id": pid, "prompt": c["prompt"], "chosen": c["response"], "rejected": r["response"],
                      **{f"{x}_chosen": c[x] for x in extra}, **{f"{x}_rejected": r[x] for x in extra}})
        id_rows.append({"prompt_id": pid, "prompt_ids": list(c["prompt_ids"]), "chosen_ids": list(c["response_ids"]),
                        "rejected_ids": list(r["response_ids"])})
    return pairs, id_rows


def build_offline(cfg: WorldConfig, data: Path, pi_m1: Path, out: Path, quiet: bool) -> dict:
    ann = cfg.annotators()
    work = out.parent / f".{out.name}.work"
    offline = read_jsonl(data / "offline_prompts.jsonl")
    samples = sample_policy(pi_m1, offline, work / "offline", seed=cfg.seed, round_=0, k=cfg.offline_samples,
                            temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, quiet=quiet)
    pairs, id_rows = label_pairs(ann, samples[samples["finish_reason"] == "stop"])
    held = read_jsonl(data / "eval_prompts.jsonl")
    hs = sample_policy(pi_m1, held, work / "heldout", seed=cfg.seed, round_=-1, k=2, temperature=cfg.temperature,
                       max_new_tokens=cfg.max_new_tokens, quiet=quiet)
    heldout = []
    for pid, group in hs.groupby("prompt_id", sort=False):
        a, b = list(group["response"])
        if a == b:
            continue
        prompt = group["prompt"].iloc[0]
        if not ann.prefers_first(prompt, a, b, key=("heldout", pid)):
            a, b = b, a
        heldout.append({"prompt_id": pid, "prompt": prompt, "chosen": a, "rejected": b,
                        "quality_chosen": quality(prompt, a), "quality_rejected": quality(prompt, b)})
    with rundir.atomic_path(out) as tmp:
        tmp.mkdir()
        rundir.write_jsonl(tmp / "offline_pairs.jsonl", pairs)
        pd.DataFrame(id_rows).to_parquet(tmp / "offline_pairs.parquet", index=False)
        rundir.write_jsonl(tmp / "heldout_pairs.jsonl", heldout)
    shutil.rmtree(work, ignore_errors=True)
    return {"offline_pairs": len(pairs), "heldout_pairs": len(heldout)}


def build_pi_0(cfg: WorldConfig, pi_m1: Path, offline: Path, out: Path, quiet: bool) -> dict:
    from dicekit.models import load_model
    from dicekit.config import TrainConfig
    from dicekit.round.score import score_sequences
    from dicekit.round.train import train_dpo

    rows = pd.read_parquet(offline / "offline_pairs.parquet")
    ref, _ = load_model(str(pi_m1), tokenizer=False)
    n = len(rows)  # chosen and rejected in one call: each prompt's KV cache serves both sides
    logps = score_sequences(ref, list(rows["prompt_ids"]) * 2, list(rows["chosen_ids"]) + list(rows["rejected_ids"]))
    rows["ref_chosen_logps"], rows["ref_rejected_logps"] = logps[:n], logps[n:]
    del ref
    loss_type, weights = ("sigmoid",), None
    if cfg.pi0_sft_weight > 0:
        loss_type, weights = ("sigmoid", "sft"), (1.0, cfg.pi0_sft_weight)
    tcfg = TrainConfig(beta=cfg.pi0_beta, loss_type=loss_type, loss_weights=weights, learning_rate=cfg.pi0_learning_rate,
                       global_batch_size=cfg.pi0_batch_size, per_device_batch_size=cfg.pi0_batch_size, max_steps=None,
                       num_epochs=cfg.pi0_epochs, logging_steps=1, quiet=quiet)
    work = out.parent / f".{out.name}.work"
    with rundir.atomic_path(out) as tmp:
        tmp.mkdir()
        info = train_dpo(str(pi_m1), rows, tmp / "model", tcfg, tmp / "train_log.jsonl", work, seed=cfg.seed)
    shutil.rmtree(work, ignore_errors=True)
    return info


def build(cfg: WorldConfig = WorldConfig(), root: str | Path | None = None, quiet: bool = False) -> World:
    """Build whatever stage is missing under ``root`` (default :func:`cache_root`) and return the paths."""
    root = Path(root) if root is not None else cache_root()
    keys = stage_keys(cfg)
    d = {s: root / k for s, k in keys.items()}
    timings = {}

    def stage(name, fn, *args):
        if d[name].exists():
            say(f"world: reusing {name} ({d[name]})", quiet)
            return
        say(f"world: building {name} ...", quiet)
        t0 = time.time()
        info = fn(*args) or {}
        timings[name] = round(time.time() - t0, 1)
        rundir.write_json(root / f"{keys[name]}.json", {"config": dataclasses.asdict(cfg), "seconds": timings[name], **info})
        say(f"world: {name} done in {timings[name]:.1f}s {info if info else ''}", quiet)

    stage("data", build_data, cfg, d["data"])
    stage("pi_m1", build_pi_m1, cfg, d["data"], d["pi_m1"], quiet)
    stage("offline", build_offline, cfg, d["data"], d["pi_m1"], d["offline"], quiet)
    stage("pi_0", build_pi_0, cfg, d["pi_m1"], d["offline"], d["pi_0"], quiet)
    return World(
        root=root, tokenizer=d["data"] / "tokenizer", sft=d["data"] / "sft.jsonl",
        offline_prompts=d["data"] / "offline_prompts.jsonl", dice_prompts=d["data"] / "dice_prompts.jsonl",
        eval_prompts=d["data"] / "eval_prompts.jsonl", pi_m1=d["pi_m1"], offline_pairs=d["offline"] / "offline_pairs.jsonl",
        offline_pairs_ids=d["offline"] / "offline_pairs.parquet", heldout_pairs=d["offline"] / "heldout_pairs.jsonl",
        pi_0=d["pi_0"] / "model", timings=timings,
    )
