"""The pieces of the SmolLM2 × IFEval recipe (``benchmarks/smollm2-ifeval/run.py``): simulated
annotators that judge by the IFEval checker, offline pairs from π_{-1}'s samples, π_0 by DPO.

* :class:`CheckerAnnotators` — the task world's annotators (:mod:`dicekit.world.annotators`: noise τ,
  verbosity bias λ per ``length_scale`` characters, seeded labels) whose perceived quality is the
  checker's share of the prompt's instructions followed (:func:`dicekit.evals.ifeval.score_response`,
  instructions read from the prompts file as the ``ifeval:`` judge reads them).
* :func:`build_offline_pairs` — K samples of π_{-1} per offline prompt (dicekit's keyed sampler,
  round 0), finished samples only, best-vs-worst by the annotators' round-robin wins (UltraFeedback
  style): ``offline_pairs.jsonl`` (prompt/chosen/rejected text, the round's ``offline_data``) and
  ``offline_pairs.parquet`` (exact token IDs, for π_0's training), plus the samples and their
  checker scores.
* :func:`build_pi_0` — DPO of π_{-1} on those pairs through the round's training stage
  (:func:`dicekit.round.train.train_dpo`, reference log-probs from π_{-1} in fp32).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from dicekit import rundir
from dicekit.world.annotators import Annotators


@lru_cache(maxsize=8)
def _instructions(prompts_file: str) -> dict:
    from dicekit.evals.ifeval_judge import IFEvalJudge

    return IFEvalJudge(prompts_file).instructions


@dataclass(frozen=True)
class CheckerAnnotators(Annotators):
    """Annotators whose quality is the IFEval checker's share (0–1, strict) of the prompt's
    instructions followed, the prompt's instructions read from ``prompts_file``."""

    prompts_file: str = ""

    def quality(self, prompt: str, response: str) -> float:
        from dicekit.evals.ifeval import score_response

        ids, kwargs = _instructions(self.prompts_file)[prompt]
        return score_response(response, ids, kwargs, prompt)


def build_offline_pairs(model_dir: str, prompts: list[dict], out: Path, annotators: CheckerAnnotators, *, seed: int,
                        samples_per_prompt: int, temperature: float, top_p: float, max_new_tokens: int,
                        batch_size: int, generate_dtype: str = "float32", quiet: bool = False) -> dict:
    """Sample, label and write the offline pairs into ``out`` (atomically; shards resume from
    ``out``'s work folder). Returns counts."""
    from dicekit.round.generate import generate_samples
    from dicekit.world.recipe import label_pairs
    from dicekit.models import load_model, prompt_ids, stop_token_ids

    work = out.parent / f".{out.name}.work"
    model, tok = load_model(model_dir, dtype=generate_dtype)
    df = pd.DataFrame({"prompt_id": [p["prompt_id"] for p in prompts], "prompt": [p["prompt"] for p in prompts]})
    df["prompt_ids"] = [prompt_ids(tok, p) for p in df["prompt"]]
    samples = generate_samples(model, tok, stop_token_ids(model, tok), df, work / "gen", seed=seed, round_=0,
                               samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p, batch_size=batch_size, shard_prompts=16,
                               quiet=quiet)
    del model
    samples["checker_score"] = [annotators.quality(p, r) for p, r in zip(samples["prompt"], samples["response"])]
    done = samples[samples["finish_reason"] == "stop"]
    pairs, id_rows = label_pairs(annotators, done, extra=("checker_score",))
    with rundir.atomic_path(out) as tmp:
        tmp.mkdir()
        rundir.write_jsonl(tmp / "offline_pairs.jsonl", pairs)
        pd.DataFrame(id_rows).to_parquet(tmp / "offline_pairs.parquet", index=False)
        samples.drop(columns=["prompt_ids"]).to_parquet(tmp / "samples.parquet", index=False)
    shutil.rmtree(work, ignore_errors=True)
    pf = pd.DataFrame(pairs)
    return {"samples": len(samples), "finished_samples": len(done), "pairs": len(pairs),
            "chosen_follows_more": float((pf.checker_score_chosen > pf.checker_score_rejected).mean()) if len(pf) else None,
            "chosen_follows_fewer": float((pf.checker_score_chosen < pf.checker_score_rejected).mean()) if len(pf) else None,
            "chosen_longer": float((pf.chosen.str.len() > pf.rejected.str.len()).mean()) if len(pf) else None}


def build_pi_0(pi_m1: str, offline: Path, out: Path, train_cfg, seed: int) -> dict:
    """π_0 = DPO of π_{-1} on ``offline/offline_pairs.parquet`` (reference log-probs: π_{-1}, fp32),
    saved to ``out/model`` with ``out/train_log.jsonl``."""
    from dicekit.models import load_model
    from dicekit.round.score import score_sequences
    from dicekit.round.train import train_dpo

    rows = pd.read_parquet(offline / "offline_pairs.parquet")
    ref, _ = load_model(pi_m1, tokenizer=False)
    n = len(rows)
    logps = score_sequences(ref, list(rows["prompt_ids"]) * 2, list(rows["chosen_ids"]) + list(rows["rejected_ids"]))
    rows["ref_chosen_logps"], rows["ref_rejected_logps"] = logps[:n], logps[n:]
    del ref
    work = out.parent / f".{out.name}.work"
    with rundir.atomic_path(out) as tmp:
        tmp.mkdir()
        info = train_dpo(pi_m1, rows, tmp / "model", train_cfg, tmp / "train_log.jsonl", work, seed=seed)
        info = {**info, "weights_sha256": weights_digest(tmp / "model")}
    shutil.rmtree(work, ignore_errors=True)
    return info


def weights_digest(model_dir: Path) -> str:
    """sha256 over a saved model's weight files (names and bytes, in name order): its safetensors files,
    else its ``pytorch_model*.bin`` (never ``training_args.bin``, which records paths and times)."""
    h = hashlib.sha256()
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("pytorch_model*.bin"))
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
