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
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import data, rundir
from dicekit.core import pairs as P
from dicekit.round import dist
from dicekit.config import RoundConfig, to_dict
from dicekit.errors import UserError
from dicekit.core.reward import implicit_reward
from dicekit.progress import say

_RESUME_IGNORED = {"quiet", "report_to", "run_dir", "alpha", "num_rounds", "diagnose", "diagnose_judge", "diagnose_judge_base_url",
                   "diagnose_judge_api_key_env", "diagnose_max_pairs", "health", "health_pairs", "health_max_pairs",
                   "health_previous_reward",  # health.json, once written, is reused
                   "score_tokens_per_batch"}  # batch size: the same scores up to float rounding


class _OneModel:
    """Holds at most one loaded model (π_{t-1} and π_{t-2} are never both in memory)."""

    def __init__(self, dtype: str):
        self.dtype, self.spec, self.pair = dtype, None, None

    def get(self, spec: str):
        if self.spec != spec:
            from dicekit.models import load_model

            self.pair = None
            self.pair = load_model(spec, dtype=self.dtype)
            self.spec = spec
        return self.pair

    def release(self) -> None:
        """Free the held model (before training loads its own copy)."""
        self.spec, self.pair = None, None


def models_for_round(cfg: RoundConfig, t: int) -> tuple[str, str]:
    """(policy π_{t-1}, reference π_{t-2}) specs for round t."""
    run = Path(cfg.run_dir)
    policy = cfg.policy if t == 1 else str(rundir.round_dir(run, t - 1) / "model")
    if t == 1:
        reference = cfg.reference
    elif t == 2:
        reference = cfg.policy
    else:
        reference = str(rundir.round_dir(run, t - 2) / "model")
    return policy, reference


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


def _prompts_with_ids(cfg: RoundConfig, tok, policy: str) -> tuple[pd.DataFrame, int]:
    """The round's prompts with their templated token IDs, and how many were dropped as too long for
    π_{t-1}'s context (``max_prompt_tokens`` / ``long_prompts``: error names the prompt's file:line)."""
    from dicekit.models import prompt_ids, prompt_token_limit

    prompts = data.load_prompts(cfg.prompts, cfg.prompts_split, cfg.max_prompts, lines=True)
    prompts["prompt_ids"] = [prompt_ids(tok, p) for p in prompts["prompt"]]
    limit = prompt_token_limit(policy, cfg.max_new_tokens, cfg.max_prompt_tokens)
    keep = data.within_limit(prompts["prompt_ids"].map(len), limit, cfg.long_prompts,
                             lambda i: f"{prompts['where'].iloc[i]}: prompt")
    kept = prompts[keep].drop(columns="where").reset_index(drop=True)
    if kept.empty:
        raise UserError(f"{cfg.prompts}: every prompt is longer than max_prompt_tokens={limit}")
    return kept, len(prompts) - len(kept)


def stage_samples(cfg: RoundConfig, t: int, rdir: Path, models: _OneModel, policy: str, reference: str) -> pd.DataFrame:
    """Generate + score + filter → samples.parquet.

    Work is split into shards of ``shard_prompts`` prompts; this process (rank r of W) generates its
    shards, scores their valid samples under the policy, then under the reference. Rank 0 merges all
    shards by (prompt_id, sample_id) into samples.parquet; other ranks wait for it.
    """
    from dicekit.round.generate import generate_samples, shard_plan
    from dicekit.models import stop_token_ids

    out = rdir / "samples.parquet"
    if out.exists():
        return pd.read_parquet(out)
    work = rdir / ".work"
    if cfg.backend == "vllm":
        from dicekit.models import load_tokenizer, stop_token_ids_of

        model, tok = None, load_tokenizer(policy)
        stop_ids = stop_token_ids_of(policy, tok)
    else:
        model, tok = models.get(policy)
        stop_ids = stop_token_ids(model, tok)
    prompts, _ = _prompts_with_ids(cfg, tok, policy)
    n_shards = len(shard_plan(len(prompts), cfg.shard_prompts))
    mine = dist.my_shards(n_shards)
    done = lambda d: [work / d / f"shard_{i:06d}.parquet" for i in mine]  # noqa: E731
    if not all(p.exists() for p in done("score_ref")):
        gen_kw = dict(seed=cfg.seed, round_=t, samples_per_prompt=cfg.samples_per_prompt,
                      max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                      batch_size=cfg.generate_batch_size, shard_prompts=cfg.shard_prompts, shards=mine, quiet=cfg.quiet)
        if cfg.backend == "vllm":
            if not all(p.exists() for p in done("gen")):
                with _vllm_engine(cfg, policy) as engine:
                    generate_samples(None, tok, stop_ids, prompts, work / "gen", engine=engine, **gen_kw)
            model, _ = models.get(policy) if not cfg.policy_logp_from_sampler else (None, tok)
        elif not all(p.exists() for p in done("gen")):
            generate_samples(_generation_model(cfg, model), tok, stop_ids, prompts, work / "gen", **gen_kw)
        _score_shards(cfg, model, work, "score_policy", "logp_policy", mine, "scoring under policy")
        ref_model, _ = models.get(reference)
        _score_shards(cfg, ref_model, work, "score_ref", "logp_ref", mine, "scoring under reference")
    if not dist.is_main():
        dist.wait_for([out], "samples.parquet from rank 0")
        return pd.read_parquet(out)
    all_shards = range(n_shards)
    dist.wait_for([work / "score_ref" / f"shard_{i:06d}.parquet" for i in all_shards], "other ranks' scoring shards")
    read = lambda d: pd.concat([pd.read_parquet(work / d / f"shard_{i:06d}.parquet") for i in all_shards])  # noqa: E731
    samples = read("gen").reset_index(drop=True)
    samples["prompt"] = [data.prompt_key(p) for p in prompts.set_index("prompt_id").loc[samples["prompt_id"], "prompt"]]
    samples["valid"] = _valid(cfg, samples)
    keys = ["prompt_id", "sample_id"]
    samples = samples.merge(read("score_policy"), on=keys, how="left").merge(read("score_ref"), on=keys, how="left")
    samples["reward"] = implicit_reward(samples["logp_policy"], samples["logp_ref"])
    if samples.loc[samples["valid"], "reward"].isna().any():
        raise RuntimeError(f"{work}: a valid sample has no score; delete {work} and re-run the round")
    rundir.write_parquet(out, samples)
    return samples


def _generation_model(cfg: RoundConfig, model):
    """The HF sampler's model: the scoring model itself, or a copy in ``generate_dtype``."""
    if not cfg.generate_dtype or cfg.generate_dtype == cfg.score_dtype:
        return model
    import copy

    import torch

    return copy.deepcopy(model).to(getattr(torch, cfg.generate_dtype))


def _vllm_engine(cfg: RoundConfig, policy: str):
    """One vLLM engine for this process: local rank r owns GPUs r·tp … r·tp+tp−1 (CPU: none)."""
    import torch

    from dicekit.round.vllm_backend import VLLMEngine

    tp = cfg.tensor_parallel_size
    local = int(os.environ.get("LOCAL_RANK", "0"))
    devices = list(range(local * tp, local * tp + tp)) if torch.cuda.is_available() else None
    return VLLMEngine(policy, tensor_parallel_size=tp, dtype=cfg.vllm_dtype,
                      gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, max_model_len=cfg.vllm_max_model_len,
                      device_ids=devices)


def _valid(cfg: RoundConfig, samples: pd.DataFrame) -> pd.Series:
    from dicekit.round.generate import mark_valid

    return mark_valid(samples, drop_truncated=cfg.drop_truncated, min_chars=cfg.min_chars, max_chars=cfg.max_chars,
                      min_valid_samples=cfg.min_valid_samples)


def _score_shards(cfg: RoundConfig, model, work: Path, name: str, column: str, shards: list[int], label: str) -> None:
    """Score the valid samples of each generation shard in ``shards`` → work/<name>/shard_i.parquet."""
    from dicekit.progress import bar
    from dicekit.round.score import score_sequences

    (work / name).mkdir(parents=True, exist_ok=True)
    with bar(label, len(shards), cfg.quiet) as advance:
        for i in shards:
            path = work / name / f"shard_{i:06d}.parquet"
            if not path.exists():
                gen = pd.read_parquet(work / "gen" / f"shard_{i:06d}.parquet")
                v = gen[_valid(cfg, gen)]
                if name == "score_policy" and cfg.policy_logp_from_sampler:
                    # the sampler's own log-probs of the sampled IDs (HF: the logits the draw used;
                    # vLLM: its raw logprobs); rows without one (e.g. shards written before) are scored
                    vals = v["logp_sampler"].to_numpy(dtype=np.float64).copy()
                    miss = np.isnan(vals)
                    if miss.any():
                        if model is None:
                            raise UserError(f"{work / 'gen' / path.name}: samples without sampler log-probs "
                                            f"(written by an older dicekit?); delete {work / 'gen'} to sample again")
                        vals[miss] = score_sequences(model, list(v["prompt_ids"][miss]), list(v["response_ids"][miss]),
                                                     tokens_per_batch=cfg.score_tokens_per_batch)
                elif model is None:
                    raise RuntimeError("no model to score with")
                else:
                    vals = score_sequences(model, list(v["prompt_ids"]), list(v["response_ids"]),
                                           tokens_per_batch=cfg.score_tokens_per_batch) if len(v) else np.zeros(0)
                rundir.write_parquet(path, pd.DataFrame({"prompt_id": v["prompt_id"].to_numpy(),
                                                         "sample_id": v["sample_id"].to_numpy(), column: vals}))
                rundir.fault_point(f"{name}:{i}")
            advance()


def generated_pairs(valid: pd.DataFrame, groups: P.Groups, alpha: float, unit: str) -> tuple[pd.DataFrame, int]:
    """Best-vs-worst pairs at α (kept ones, in prompt order) and the number of degenerate ones."""
    c, r, sel, g = P.selected_rows(valid, groups, alpha)
    lc, lr = P.sample_lengths(c, unit), P.sample_lengths(r, unit)
    df = pd.DataFrame({
        "prompt_id": c["prompt_id"], "prompt": c["prompt"], "chosen": c["response"], "rejected": r["response"],
        "source": "generated", "chosen_sample_id": c["sample_id"].astype("Int64"),
        "rejected_sample_id": r["sample_id"].astype("Int64"),
        "chosen_reward_lr": sel.chosen_score[g], "rejected_reward_lr": sel.rejected_score[g], "alpha": alpha,
        "chosen_reward": c["reward"], "rejected_reward": r["reward"], "chosen_length": lc, "rejected_length": lr,
        "prompt_ids": c["prompt_ids"], "chosen_ids": c["response_ids"], "rejected_ids": r["response_ids"],
        "ref_chosen_logps": c["logp_policy"], "ref_rejected_logps": r["logp_policy"],
    })
    return df, sel.n_degenerate


def round_alpha(cfg: RoundConfig, samples: pd.DataFrame):
    """(valid samples, Groups, α used, α*, α sweep table) of a round's samples (Eq. 6 search)."""
    valid, groups = P.pack_valid(samples, cfg.length_unit)
    grid = P.alpha_grid(*cfg.alpha_grid)
    alpha_star, tried, mean_diff, n_pairs = P.search_alpha(groups, grid, cfg.alpha_search)
    alpha = alpha_star if cfg.alpha is None else float(cfg.alpha)
    sweep = pd.DataFrame({"alpha": tried, "mean_len_diff": mean_diff, "n_pairs": n_pairs})
    return valid, groups, alpha, alpha_star, sweep


def stage_pairs(cfg: RoundConfig, t: int, rdir: Path, models: _OneModel, samples: pd.DataFrame, policy: str,
                previous: pd.DataFrame | None = None, health: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """α* search, pairs, stabilisers, replay → alpha_sweep.csv + stabilisers.json + pairs.parquet.

    ``samples``' ``reward`` is the one pairs are ranked by (the cumulative reward under
    ``reward_mode: cumulative``); ``previous``/``health``: see :func:`stabilise`."""
    import json

    out = rdir / "pairs.parquet"
    valid, groups, alpha, alpha_star, sweep = round_alpha(cfg, samples)
    info = {"alpha": alpha, "alpha_star": alpha_star}
    if out.exists():
        stab = rdir / "stabilisers.json"
        info["stabilisers"] = json.loads(stab.read_text()) if stab.exists() else None
        return pd.read_parquet(out), info
    rundir.write_csv(rdir / "alpha_sweep.csv", sweep)
    gen, n_degenerate = generated_pairs(valid, groups, alpha, cfg.length_unit)
    info["n_degenerate"] = n_degenerate
    gen, stab = stabilise(cfg, t, gen, previous, health)
    gamma = stab["replay_ratio"]
    info["stabilisers"] = stab
    offline = None
    n_off_avail = 0
    if gamma > 0:
        offline = data.load_pairs(cfg.offline_data, cfg.offline_split, cfg.max_offline_pairs)
        used = set(gen["prompt"])
        offline_keys = [data.prompt_key(p) for p in offline["prompt"]]
        n_off_avail = sum(k not in used for k in offline_keys)
    if cfg.replay_counts == "official":
        n_total = 0 if offline is None else len(offline)
        n_gen, n_off = P.replay_counts_official(len(gen), n_total, n_off_avail, gamma, cfg.max_pairs)
    else:
        n_gen, n_off = P.replay_counts(len(gen), n_off_avail, gamma, cfg.max_pairs)
    if n_gen < len(gen):
        keep = np.sort(np.random.default_rng([cfg.seed, t, 1]).choice(len(gen), n_gen, replace=False))
        gen = gen.iloc[keep].reset_index(drop=True)
    frames = [gen]
    if n_off:
        idx = P.draw_offline(offline_keys, set(gen["prompt"]), n_off, seed=[cfg.seed, t, 2])
        frames.append(_offline_rows(offline.iloc[idx].reset_index(drop=True), models, policy, rdir, cfg, alpha))
    result = pd.concat(frames, ignore_index=True)
    if len(result) == 0:
        raise UserError(f"{cfg.prompts}: round {t} has no training pairs (no prompt had "
                        f"{cfg.min_valid_samples} valid samples and replay_ratio is {gamma})")
    stab.update(n_pairs_generated=n_gen, n_pairs_offline=n_off)
    rundir.write_json(rdir / "stabilisers.json", stab)
    rundir.write_parquet(out, result)
    return result, info


def stabilise(cfg: RoundConfig, t: int, gen: pd.DataFrame, previous: pd.DataFrame | None,
              health: dict | None) -> tuple[pd.DataFrame, dict]:
    """Apply the configured stabilisers to the generated pairs; returns (kept pairs, record).

    ``filter_consistent``: keep pairs the previous round's reward (``previous``: prompt_id,
    sample_id, reward_previous; None in round 1) orders the same way; ``filter_top_fraction``: keep
    that fraction with the largest margins; ``gate``: the replay ratio becomes 1 (offline pairs
    only) when dicekit.analysis.health.gate_decision says the round's signal predicts harm. The
    record says what each did (pairs kept, the gate's decision and why) and the replay ratio used."""
    from dicekit.analysis.health import gate_decision

    rec: dict = {"reward_mode": cfg.reward_mode, "n_generated_pairs_selected": int(len(gen))}
    if cfg.filter_consistent:
        if previous is None:
            rec["filter_consistent"] = {"applied": False, "reason": "round 1 has no previous reward"}
        else:
            prev = previous.set_index(["prompt_id", "sample_id"])["reward_previous"]
            look = lambda col: prev.reindex(list(zip(gen["prompt_id"], gen[col].astype("int64")))).to_numpy()  # noqa: E731
            keep = P.consistent_pairs(look("chosen_sample_id"), look("rejected_sample_id"))
            rec["filter_consistent"] = {"applied": True, "kept": int(keep.sum()), "dropped": int((~keep).sum())}
            gen = gen[keep].reset_index(drop=True)
    if cfg.filter_top_fraction is not None:
        keep = P.top_margin_pairs(gen["chosen_reward_lr"] - gen["rejected_reward_lr"], cfg.filter_top_fraction)
        rec["filter_top_fraction"] = {"applied": True, "fraction": cfg.filter_top_fraction, "kept": int(keep.sum()),
                                      "dropped": int((~keep).sum())}
        gen = gen[keep].reset_index(drop=True)
    gamma = cfg.replay_ratio
    if cfg.gate:
        decision = gate_decision(health or {}, cfg.gate_signal, cfg.gate_threshold)
        rec["gate"] = decision
        if decision["fallback"]:
            gamma = 1.0
    rec["n_generated_pairs_kept"] = int(len(gen))
    rec["replay_ratio"] = gamma
    return gen, rec


def needs_previous(cfg: RoundConfig, t: int) -> bool:
    """Does round t score its samples under earlier models (previous reward, cumulative reward)?"""
    consistency = cfg.health_previous_reward or (cfg.gate and cfg.gate_signal == "consistency")
    return t >= 2 and (consistency or cfg.filter_consistent or cfg.reward_mode == "cumulative")


def stage_previous(cfg: RoundConfig, t: int, rdir: Path, models: _OneModel, samples: pd.DataFrame) -> pd.DataFrame | None:
    """The valid samples scored under π_{t-3} (and π_{-1} for ``reward_mode: cumulative``) →
    previous_rewards.parquet: prompt_id, sample_id, ``reward_previous`` = log π_{t-2} − log π_{t-3}
    (the reward round t−1 ranked its pairs by) and ``reward_cumulative`` = log π_{t-1} − log π_{-1}
    (nan unless cumulative). None when round t needs neither (round 1 never does)."""
    from dicekit.round.score import score_samples

    if not needs_previous(cfg, t):
        return None
    out = rdir / "previous_rewards.parquet"
    if out.exists():
        return pd.read_parquet(out)
    valid = samples[samples["valid"]].reset_index(drop=True)
    prev_ref = models_for_round(cfg, t - 1)[1]  # the reference of round t-1: π_{t-3}
    specs = {"logp_prev_ref": prev_ref}
    if cfg.reward_mode == "cumulative":
        specs["logp_base"] = cfg.reference
    scores = {}
    for column, spec in specs.items():
        if column == "logp_base" and spec == prev_ref:
            scores[column] = scores["logp_prev_ref"]  # round 2: π_{t-3} is π_{-1}
            continue
        model, _ = models.get(spec)
        scores[column] = score_samples(model, valid, rdir / ".work" / f"score_{column}", column=column, quiet=cfg.quiet,
                                       tokens_per_batch=cfg.score_tokens_per_batch,
                                       label=f"scoring under {Path(spec).name or spec}").to_numpy()
    lp_base = scores.get("logp_base", np.full(len(valid), np.nan))
    df = pd.DataFrame({"prompt_id": valid["prompt_id"].to_numpy(), "sample_id": valid["sample_id"].to_numpy(),
                       "logp_prev_ref": scores["logp_prev_ref"], "logp_base": lp_base,
                       "reward_previous": implicit_reward(valid["logp_ref"].to_numpy(), scores["logp_prev_ref"]),
                       "reward_cumulative": implicit_reward(valid["logp_policy"].to_numpy(), lp_base)})
    if dist.is_main():
        rundir.write_parquet(out, df)
    return df


def ranking_samples(cfg: RoundConfig, samples: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The samples with ``reward`` as the round ranks them: unchanged, or the cumulative reward."""
    if cfg.reward_mode != "cumulative" or previous is None:
        return samples
    cum = previous.set_index(["prompt_id", "sample_id"])["reward_cumulative"]
    out = samples.copy()
    out["reward"] = cum.reindex(list(zip(samples["prompt_id"], samples["sample_id"]))).to_numpy()
    return out


def stage_health(cfg: RoundConfig, t: int, rdir: Path, samples: pd.DataFrame, previous: pd.DataFrame | None,
                 policy: str, reference: str, models: _OneModel | None = None) -> dict | None:
    """The round monitor (dicekit.analysis.health) on the round's own reward → health.json."""
    import json

    from dicekit.analysis import health as H

    if not cfg.health:
        return None
    out = rdir / "health.json"
    if out.exists():
        return json.loads(out.read_text())
    seed = cfg.seed + t
    valid, groups, alpha, _, _ = round_alpha(cfg, samples)
    h: dict = {"alpha": alpha, "heldout_accuracy": _heldout_signal(cfg, t, policy, reference, alpha, seed, models)}
    h["heldout_dpo"] = H.heldout_dpo(h["heldout_accuracy"])
    if previous is None:
        h["consistency"] = H.unavailable("round 1 has no previous reward" if t == 1 else
                                         "previous reward not scored (health_previous_reward: false)")
    else:
        prev = previous.set_index(["prompt_id", "sample_id"])["reward_previous"]
        v = valid[["prompt_id", "sample_id", "reward"]]
        h["consistency"] = H.consistency(v["prompt_id"], v["reward"],
                                         prev.reindex(list(zip(v["prompt_id"], v["sample_id"]))).to_numpy(), seed=seed)
    c, r, _, _ = P.selected_rows(valid, groups, alpha)
    sides = {}
    for side, rows in (("chosen", c), ("rejected", r)):
        for col in ("reward", "logp_policy", "n_tokens"):
            sides[f"{side}_{col}"] = rows[col].to_numpy(np.float64)
        sides[f"{side}_length"] = P.sample_lengths(rows, cfg.length_unit)
    h["variant_agreement"] = H.variant_agreement(pd.DataFrame(sides), alpha, seed=seed)
    h["verdict"] = H.verdict(h, cfg.gate_signal, cfg.gate_threshold)
    if dist.is_main():
        rundir.write_json(out, h)
    say(H.format_health(h), cfg.quiet or not dist.is_main())
    return h


def _heldout_signal(cfg: RoundConfig, t: int, policy: str, reference: str, alpha: float, seed: int,
                    models: _OneModel | None = None) -> dict:
    """The round's reward (π_{t-1} against π_{t-2}) on labelled pairs it does not train on, scored with
    the round's loaded model(s) (``models``) rather than fresh loads."""
    from dicekit.analysis.health import heldout_from_summary, unavailable
    from dicekit.evals.reward_accuracy import summarize
    from dicekit.evals.reward_scoring import score_pairs

    source = cfg.health_pairs or cfg.offline_data
    if not source:
        return unavailable("no labelled pairs (set health_pairs or offline_data)")
    split = cfg.offline_split if not cfg.health_pairs else "train"
    pairs = data.load_pairs(source, split)
    if len(pairs) > cfg.health_max_pairs:  # the same slice every round
        keep = np.sort(np.random.default_rng([cfg.seed, 3]).choice(len(pairs), cfg.health_max_pairs, replace=False))
        pairs = pairs.iloc[keep].reset_index(drop=True)
    scored = score_pairs(policy, reference, pairs, length_unit=cfg.length_unit, dtype=cfg.score_dtype,
                         tokens_per_batch=cfg.score_tokens_per_batch, quiet=True, models=models)
    out = heldout_from_summary(summarize(scored, alpha, seed=seed))
    out["source"] = "health_pairs" if cfg.health_pairs else "offline_data (pairs earlier rounds may have trained on)"
    return out


def _offline_rows(off: pd.DataFrame, models: _OneModel, policy: str, rdir: Path, cfg: RoundConfig, alpha: float) -> pd.DataFrame:
    """Offline pairs tokenised with the generation template, reference log-probs under π_{t-1}."""
    from dicekit.models import end_of_turn_id, prompt_ids, response_ids, stop_token_ids
    from dicekit.round.score import score_samples

    model, tok = models.get(policy)
    eot = end_of_turn_id(tok, stop_token_ids(model, tok))
    p_ids = [prompt_ids(tok, p) for p in off["prompt"]]
    c_ids = [response_ids(tok, x, eot) for x in off["chosen"]]
    r_ids = [response_ids(tok, x, eot) for x in off["rejected"]]
    n = len(off)
    both = pd.DataFrame({"prompt_id": list(off["prompt_id"]) * 2, "sample_id": list(range(2 * n)),
                         "prompt_ids": p_ids * 2, "response_ids": c_ids + r_ids})
    lp = score_samples(model, both, rdir / ".work" / "score_offline", column="logp", quiet=cfg.quiet,
                       tokens_per_batch=cfg.score_tokens_per_batch, label="scoring offline pairs").to_numpy()
    return pd.DataFrame({
        "prompt_id": off["prompt_id"], "prompt": [data.prompt_key(p) for p in off["prompt"]],
        "chosen": off["chosen"], "rejected": off["rejected"], "source": "offline",
        "chosen_sample_id": pd.array([None] * n, dtype="Int64"), "rejected_sample_id": pd.array([None] * n, dtype="Int64"),
        "chosen_reward_lr": np.nan, "rejected_reward_lr": np.nan, "alpha": alpha,
        "chosen_reward": np.nan, "rejected_reward": np.nan,
        "chosen_length": [len(x) if cfg.length_unit == "chars" else len(i) for x, i in zip(off["chosen"], c_ids)],
        "rejected_length": [len(x) if cfg.length_unit == "chars" else len(i) for x, i in zip(off["rejected"], r_ids)],
        "prompt_ids": p_ids, "chosen_ids": c_ids, "rejected_ids": r_ids,
        "ref_chosen_logps": lp[:n], "ref_rejected_logps": lp[n:],
    })


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
    return _prompts_with_ids(cfg, toks[policy], policy)[1]


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
    models = _OneModel(cfg.score_dtype)
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
