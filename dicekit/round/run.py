"""run_round(cfg): one DICE round (Algorithm 1 of the paper), resumable stage by stage.

Round t (t ≥ 1) of a run in ``cfg.run_dir``:

1. **generate** K samples per prompt from π_{t-1}                       → .work/gen/shard_*.parquet
2. **score** ``logp_policy`` under π_{t-1} and ``logp_ref`` under π_{t-2}; ``reward = logp_policy -
   logp_ref``; filter                                                    → samples.parquet
3. **pairs**: α* (Eq. 6), best-vs-worst pairs (Eq. 5), replay mix with offline pairs (γ), reference
   log-probs of offline pairs under π_{t-1}                              → alpha_sweep.csv, pairs.parquet
4. **train** π_t by DPO from π_{t-1}, reference π_{t-1}                   → model/, train_log.jsonl
5. **metrics**                                                           → metrics.json (round done)

Between 2 and 3, the round monitor (dicekit.analysis.health, ``health: true``) writes judge-free
signals to health.json (→ metrics.json["health"]); with the previous reward asked for (the
consistency signal, ``filter_consistent``, ``reward_mode: cumulative``) the valid samples are also
scored under π_{t-3} (and π_{-1})                                        → previous_rewards.parquet.
Stage 3 then applies the configured stabilisers (consistency / top-margin filters, the gate that
falls back to offline pairs) and records what they did                   → stabilisers.json.

π_0 = ``cfg.policy``, π_{-1} = ``cfg.reference``, π_t = round_t/model. Each stage is skipped when
its output exists; generation and scoring continue from their last saved shard. Samples are keyed
by (seed, round, prompt_id, sample_id), so a resumed round produces the same files as an
uninterrupted one.

The stages live in their own modules: ``chain`` (which models, one in memory at a time), ``collect``
(1–2), ``monitor`` (the previous rewards and the round monitor), ``pairing`` (3), ``train`` (4).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import data, rundir
from dicekit.config import RoundConfig, to_dict
from dicekit.errors import UserError
from dicekit.progress import say
from dicekit.round import dist
from dicekit.round.chain import OneModel, models_for_round
from dicekit.round.collect import prompts_with_ids, stage_samples
from dicekit.round.monitor import ranking_samples, stage_health, stage_previous
from dicekit.round.pairing import stage_pairs

_RESUME_IGNORED = {"quiet", "report_to", "run_dir", "alpha", "num_rounds", "diagnose", "diagnose_judge", "diagnose_judge_base_url",
                   "diagnose_judge_api_key_env", "diagnose_max_pairs", "health", "health_pairs", "health_max_pairs",
                   "health_previous_reward",  # health.json, once written, is reused
                   "score_tokens_per_batch",  # batch size: the same scores up to float rounding
                   "save_steps"}  # how often training checkpoints, not what it trains


def next_round(cfg: RoundConfig) -> int:
    done = rundir.finished_rounds(cfg.run_dir)
    return (max(done) + 1) if done else 1


def stored_config(cfg: RoundConfig) -> dict:
    """The run's config as recorded in run.yaml: model and data paths stored as rundir.stored_path
    (``./``-relative inside the run folder, absolute outside it), so the folder can move."""
    run = to_dict(cfg)
    for key in ("policy", "reference", "prompts", "offline_data"):
        run[key] = rundir.stored_path(cfg.run_dir, run[key])
    return run


def _round_config(cfg: RoundConfig, t: int, policy: str, reference: str) -> dict:
    run = stored_config(cfg)
    run_models = {"run_policy": run.pop("policy"), "run_reference": run.pop("reference")}
    return {"round": t, "policy": rundir.stored_path(cfg.run_dir, policy),
            "reference": rundir.stored_path(cfg.run_dir, reference), **run, **run_models,
            "alpha_requested": cfg.alpha, **rundir.provenance()}


def _check_resume(rdir: Path, current: dict, run_dir: str) -> None:
    """A round with work in it resumes only under the settings it was started with (paths compared
    where they point, so a moved run folder resumes). A round folder holding only its config.yaml
    (a start that stopped before any work) takes the new settings."""
    path = rdir / "config.yaml"
    if not path.exists() or not any(p.name != "config.yaml" for p in rdir.iterdir()):
        return
    import yaml

    old = yaml.safe_load(data.read_text(path)) or {}

    def norm(key, v):
        v = rundir.resolved_path(run_dir, v) if key in rundir.PATH_KEYS and isinstance(v, str) else v
        return os.path.abspath(v) if key in rundir.PATH_KEYS and isinstance(v, str) and rundir.is_local_spec(v) else v

    for key, value in current.items():
        if key in _RESUME_IGNORED or key in ("dicekit_version", "git_sha"):
            continue
        if key in old and norm(key, old[key]) != norm(key, value):
            raise UserError(f"{path}: round was started with {key}={old[key]!r}, now {value!r}; "
                            f"restore the setting or delete {rdir} to start the round again")


def round_metrics(samples: pd.DataFrame, pairs_df: pd.DataFrame, info: dict, train: dict, log_path: Path) -> dict:
    """The round's summary numbers, all computed from its files."""
    import json

    valid = samples[samples["valid"]]
    gen = pairs_df[pairs_df["source"] == "generated"]
    logs = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()] if log_path.exists() else []
    steps = [x for x in logs if "loss" in x]
    m = {
        "n_prompts": int(samples["prompt_id"].nunique()),
        "n_samples": int(len(samples)),
        "n_valid_samples": int(len(valid)),
        "n_valid_prompts": int(valid["prompt_id"].nunique()),
        "n_truncated": int((samples["finish_reason"] == "length").sum()),
        "alpha": info["alpha"], "alpha_star": info["alpha_star"],
        "n_pairs": int(len(pairs_df)), "n_pairs_generated": int(len(gen)),
        "n_pairs_offline": int((pairs_df["source"] == "offline").sum()),
        "mean_len_chosen": float(gen["chosen_length"].mean()) if len(gen) else None,
        "mean_len_rejected": float(gen["rejected_length"].mean()) if len(gen) else None,
        "mean_len_diff": float((gen["chosen_length"] - gen["rejected_length"]).mean()) if len(gen) else None,
        "mean_reward_margin": float((gen["chosen_reward"] - gen["rejected_reward"]).mean()) if len(gen) else None,
        "mean_reward_lr_margin": float((gen["chosen_reward_lr"] - gen["rejected_reward_lr"]).mean()) if len(gen) else None,
        "corr_reward_length": float(np.corrcoef(valid["reward"], valid["n_chars"])[0, 1]) if len(valid) > 2 else None,
        **train,
        "final_loss": steps[-1]["loss"] if steps else None,
        "final_reward_accuracy": steps[-1].get("rewards/accuracies") if steps else None,
    }
    return m


def run_diagnostic(cfg: RoundConfig, samples: pd.DataFrame, alpha: float, t: int) -> dict:
    from dicekit.analysis.diagnose import diagnose_round

    return diagnose_round(cfg.run_dir, t, samples, alpha, cfg.diagnose_judge, base_url=cfg.diagnose_judge_base_url,
                          api_key_env=cfg.diagnose_judge_api_key_env, max_pairs=cfg.diagnose_max_pairs,
                          unit=cfg.length_unit, seed=cfg.seed + t, quiet=cfg.quiet)


def _check_inputs(cfg: RoundConfig, policy: str, reference: str) -> int:
    """Fail on bad input before anything is written: both models have a config and a tokenizer (local
    paths must exist; hub ids respect HF_HUB_OFFLINE), data files parse, prompts fit the context.
    Returns the number of prompts dropped as too long."""
    from dicekit.models import check_source, context_length, load_tokenizer

    for spec in (policy, reference):  # cheap checks first: paths, then the data files
        check_source(spec)
    data.load_prompts(cfg.prompts, cfg.prompts_split, cfg.max_prompts)
    if cfg.replay_ratio > 0:
        data.load_pairs(cfg.offline_data, cfg.offline_split, cfg.max_offline_pairs)
    toks = {}
    for spec in (policy, reference):
        toks[spec] = load_tokenizer(spec)
        context_length(spec)
    return prompts_with_ids(cfg, toks[policy], policy)[1]


def run_round(cfg: RoundConfig, round_: int | None = None) -> Path:
    """Run (or resume) round ``round_`` (default: the next unfinished one). Returns the round folder.
    Everything is validated before anything is written; the run folder's lock is held throughout."""
    if cfg.quiet:
        from dicekit.progress import silence_libraries

        silence_libraries()
    t = round_ or next_round(cfg)
    if t > 1 and not (rundir.round_dir(cfg.run_dir, t - 1) / "metrics.json").exists():
        raise UserError(f"{cfg.run_dir}: round {t - 1} is not finished; run it first")
    rdir = rundir.round_dir(cfg.run_dir, t)
    if (rdir / "metrics.json").exists():
        say(f"round {t} is already finished ({rdir}); nothing to do")
        return rdir
    policy, reference = models_for_round(cfg, t)
    current = _round_config(cfg, t, policy, reference)
    if rdir.is_dir():
        _check_resume(rdir, current, cfg.run_dir)
    n_long = _check_inputs(cfg, policy, reference)
    with rundir.run_lock(cfg.run_dir, f"dicekit run-round (round {t})"):
        if (rdir / "metrics.json").exists():  # finished by the writer that held the lock before us
            say(f"round {t} is already finished ({rdir}); nothing to do")
            return rdir
        return _run_round_locked(cfg, t, rdir, policy, reference, current, n_long)


def _run_round_locked(cfg: RoundConfig, t: int, rdir: Path, policy: str, reference: str, current: dict,
                      n_long: int) -> Path:
    from dicekit.round.train import train_dpo

    rdir.mkdir(parents=True, exist_ok=True)
    main = dist.is_main()
    quiet = cfg.quiet or not main
    if main:
        rundir.write_yaml(Path(cfg.run_dir) / "run.yaml", {**stored_config(cfg), **rundir.provenance()})
        if not (rdir / "config.yaml").exists():
            rundir.write_yaml(rdir / "config.yaml", current)
    say(f"round {t}: policy {policy}, reference {reference}" + (f" ({dist.world_size()} processes)" if main and dist.world_size() > 1 else ""), quiet)
    if n_long:
        say(f"{n_long} prompts longer than max_prompt_tokens dropped (long_prompts: drop)", quiet)
    timings = {}
    models = OneModel(cfg.score_dtype)
    t0 = time.perf_counter()
    samples = stage_samples(cfg, t, rdir, models, policy, reference)
    timings["samples_s"] = time.perf_counter() - t0
    valid = samples[samples["valid"]]
    say(f"samples: {len(samples)} from {samples['prompt_id'].nunique()} prompts, {len(valid)} valid "
        f"({valid['prompt_id'].nunique()} prompts)", quiet)
    t0 = time.perf_counter()
    if not main:
        dist.wait_for([rdir / "pairs.parquet"], "pairs.parquet from rank 0")
    previous = stage_previous(cfg, t, rdir, models, samples)
    health = stage_health(cfg, t, rdir, samples, previous, policy, reference, models)
    timings["health_s"] = time.perf_counter() - t0  # the monitor's share of pairs_s
    pairs_df, info = stage_pairs(cfg, t, rdir, models, ranking_samples(cfg, samples, previous), policy, previous, health)
    timings["pairs_s"] = time.perf_counter() - t0
    if main:
        rundir.write_yaml(rdir / "config.yaml", {**current, "alpha": info["alpha"]})
    n_gen = int((pairs_df["source"] == "generated").sum())
    say(f"pairs: alpha={info['alpha']:.4g}, {n_gen} generated + {len(pairs_df) - n_gen} offline", quiet)
    models.release()
    t0 = time.perf_counter()
    train = {}
    if not (rdir / "model").exists():
        # the round's config is its training config (config.TrainConfig): beta, learning_rate, ... as read
        train = train_dpo(policy, pairs_df, rdir / "model", cfg, rdir / "train_log.jsonl", rdir / ".work" / "train",
                          seed=cfg.seed + t)
    timings["train_s"] = time.perf_counter() - t0
    if not main:
        return rdir
    metrics = {"round": t, **round_metrics(samples, pairs_df, info, train, rdir / "train_log.jsonl"),
               "n_prompts_dropped_long": n_long, "timings": timings}
    if health is not None:
        metrics["health"] = health
    if info.get("stabilisers") is not None:
        metrics["stabilisers"] = info["stabilisers"]
    if cfg.diagnose:
        metrics["diagnostic"] = run_diagnostic(cfg, samples, info["alpha"], t)
    rundir.write_json(rdir / "metrics.json", metrics)
    rundir.cleanup_work(rdir)
    say(f"round {t} done: {len(pairs_df)} pairs, final loss {metrics['final_loss']}, model in {rdir / 'model'}", quiet)
    return rdir
