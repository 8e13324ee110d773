"""Stage 1–2 of a round: K samples per prompt from π_{t-1}, scored under π_{t-1} and π_{t-2}, filtered
→ samples.parquet (generation and scoring resume from their last saved shard; multi-process: each
rank its own shards, rank 0 merges)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import data, rundir
from dicekit.config import RoundConfig
from dicekit.core.reward import implicit_reward
from dicekit.errors import UserError
from dicekit.round import dist
from dicekit.round.chain import OneModel


def prompts_with_ids(cfg: RoundConfig, tok, policy: str) -> tuple[pd.DataFrame, int]:
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


def stage_samples(cfg: RoundConfig, t: int, rdir: Path, models: OneModel, policy: str, reference: str) -> pd.DataFrame:
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
    prompts, _ = prompts_with_ids(cfg, tok, policy)
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
