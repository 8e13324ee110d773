"""Stage: K samples per prompt (HF backend), and plain completions for evaluations.

Samples are generated shard by shard: a shard is a fixed run of consecutive prompts (all K samples
of each), generated in fixed batches, so its batches are the same on every run, a resumed stage
continues from the first shard not yet on disk, and ranks of a multi-process run split the shards. Each sample's randomness comes from its own key (dicekit.round.sampling), so it does
not depend on which other prompts share its batch either. Token IDs are kept exactly as sampled:
``prompt_ids`` is the templated prompt fed to the model, ``response_ids`` runs up to and including
the first stop token (``finish_reason = "stop"``) or is ``max_new_tokens`` long (``"length"``).

A backend only has to turn (prompt_ids, keys) into response token IDs; shards, filtering and the
run-folder schema are shared, so a vLLM backend or rank-sharded generation plugs in at
``_generate_batch`` / ``shard_plan`` without changing the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.core.pairs import response_chars
from dicekit.progress import bar
from dicekit.round.sampling import sample_key

SAMPLE_COLUMNS = ["prompt_id", "sample_id", "prompt", "response", "prompt_ids", "response_ids",
                  "n_tokens", "n_chars", "finish_reason", "logp_sampler"]


def shard_plan(n_prompts: int, shard_prompts: int) -> list[tuple[int, int]]:
    """[start, stop) prompt ranges of ``shard_prompts`` consecutive prompts: the unit of resumption
    and of multi-process sharding."""
    return [(lo, min(lo + shard_prompts, n_prompts)) for lo in range(0, n_prompts, shard_prompts)]


def _left_pad(prompts: list[list[int]], pad_id: int):
    """(input_ids, attention_mask, position_ids) of a left-padded batch; positions count real tokens
    from 0 (pads get 0), as ``generate`` numbers them."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return ids, mask, pos


def _generate_batch(model, pad_id: int, stop_ids, prompts: list[list[int]], keys: list[int], *,
                    max_new_tokens: int, temperature: float, top_p: float) -> list[tuple[list[int], str, float]]:
    """One left-padded batch, decoded by dicekit's own loop; returns (response_ids, finish_reason,
    logp) per row, ``logp`` being the sampling model's own summed log-probs of ``response_ids`` (raw
    logits in float32, stop token included), read off the logits the draw used.

    The loop makes the same forward calls as ``transformers``' ``generate`` with
    :class:`~dicekit.round.sampling.KeyedSampler` (prompt forward with the last position's logits only, then
    one token per step through the KV cache) and draws the same tokens (tested token for token), but
    a row leaves the batch as soon as it emits a stop token: its cache entries are dropped and later
    steps run on the rows still going. Greedy evaluation and samples of very unequal lengths then cost
    what their tokens cost, not ``batch × longest``. The model runs in its own dtype (a bfloat16 copy
    for ``generate_dtype: bfloat16``; on a CPU with eager attention, :func:`dicekit.models.decode_attention`);
    the draw and ``logp`` use its logits cast to float32.
    """
    import torch
    from transformers import DynamicCache

    from dicekit.core.objectives import logits_logps
    from dicekit.models import decode_attention
    from dicekit.round.sampling import choose_tokens, uniforms

    device = next(model.parameters()).device
    ids, mask, pos = (t.to(device) for t in _left_pad(prompts, pad_id))
    stops = torch.tensor(sorted({int(s) for s in stop_ids}), dtype=torch.long, device=device)
    all_keys = np.array(keys, dtype=np.uint64)
    rows = torch.arange(len(prompts), device=device)  # original index of each row still decoding
    out_ids: list[list[int]] = [[] for _ in prompts]
    out_lp = [0.0] * len(prompts)
    reason = ["length"] * len(prompts)
    cache = DynamicCache(config=model.config)
    with torch.no_grad(), decode_attention(model):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1, :].float()
        last = pos[:, -1]
        for step in range(max_new_tokens):
            u = torch.from_numpy(uniforms(all_keys[rows.cpu().numpy()], step)).to(device)
            tok = choose_tokens(logits, u, temperature, top_p)
            lp = logits_logps(logits, tok).double().cpu().tolist()
            done = torch.isin(tok, stops)
            for r, t, l, d in zip(rows.tolist(), tok.tolist(), lp, done.tolist()):
                out_ids[r].append(t)
                out_lp[r] += l
                if d:
                    reason[r] = "stop"
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero()[:, 0]
                cache.batch_select_indices(keep)
                rows, tok, mask, last = rows[keep], tok[keep], mask[keep], last[keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            last = last + 1
            logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=last[:, None],
                           past_key_values=cache, use_cache=True).logits[:, -1, :].float()
    return [(out_ids[b], reason[b], float(out_lp[b])) for b in range(len(prompts))]


def _generate_batch_hf(model, pad_id: int, stop_ids, prompts: list[list[int]], keys: list[int], *,
                       max_new_tokens: int, temperature: float, top_p: float) -> list[tuple[list[int], str, float]]:
    """The same contract through ``transformers``' ``generate`` with the keyed draw as a logits
    processor (:class:`~dicekit.round.sampling.KeyedSampler`): the reference :func:`_generate_batch` is
    tested against, and the "dicekit on HF generate" line of ``benchmarks/generation.py``."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    from dicekit.models import decode_attention
    from dicekit.round.sampling import KeyedSampler

    ids, mask, _ = _left_pad(prompts, pad_id)
    width = ids.shape[1]
    gen_cfg = GenerationConfig(
        do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=list(stop_ids), pad_token_id=pad_id,
        num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0, temperature=None, top_p=None, top_k=None,
    )
    sampler = KeyedSampler(keys, width, temperature, top_p)
    device = next(model.parameters()).device
    with torch.no_grad(), decode_attention(model):
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen_cfg,
                             logits_processor=LogitsProcessorList([sampler]))
    stops = set(int(s) for s in stop_ids)
    step_logps = torch.stack(sampler.step_logps, dim=1).numpy() if sampler.step_logps else np.zeros((len(prompts), 0))
    results = []
    for b, row in enumerate(out[:, width:].tolist()):
        cut = next((j for j, t in enumerate(row) if t in stops), None)
        ids, reason = (row[:max_new_tokens], "length") if cut is None else (row[: cut + 1], "stop")
        results.append((ids, reason, float(step_logps[b, : len(ids)].sum())))
    return results


def decode_response(tokenizer, response_ids: list[int], stop_ids) -> str:
    ids = response_ids[:-1] if response_ids and response_ids[-1] in set(stop_ids) else response_ids
    return tokenizer.decode(ids, skip_special_tokens=True)


def shard_path(work_dir: Path, i: int) -> Path:
    return Path(work_dir) / f"shard_{i:06d}.parquet"


def generate_samples(model, tokenizer, stop_ids, prompts: pd.DataFrame, work_dir: Path, *, seed: int, round_: int,
                     samples_per_prompt: int, max_new_tokens: int, temperature: float, top_p: float,
                     batch_size: int, shard_prompts: int = 64, shards: list[int] | None = None,
                     quiet: bool = False, engine=None) -> pd.DataFrame:
    """Generate (or resume) shards under ``work_dir`` and return their samples, ordered by (prompt
    order, sample_id). ``prompts`` has columns prompt_id, prompt, prompt_ids. A shard's prompts are
    generated ``batch_size // samples_per_prompt`` at a time (all K samples of a prompt in one batch).
    ``shards``: only these shard indices (a rank's share); default all. ``engine``: a
    :class:`dicekit.round.vllm_backend.VLLMEngine` to sample with instead of ``model`` (HF)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    plan = shard_plan(len(prompts), shard_prompts)
    todo = list(range(len(plan))) if shards is None else list(shards)
    missing = [i for i in todo if not shard_path(work_dir, i).exists()]
    pad_id = int(tokenizer.pad_token_id)
    per_batch = max(1, batch_size // samples_per_prompt)
    with bar("sampling prompts", sum(plan[i][1] - plan[i][0] for i in todo), quiet) as advance:
        advance(sum(plan[i][1] - plan[i][0] for i in todo if i not in missing))
        for i in missing:
            rows = []
            for lo in range(plan[i][0], plan[i][1], per_batch):
                chunk = prompts.iloc[lo : min(lo + per_batch, plan[i][1])]
                rows += _sample_chunk(model, tokenizer, stop_ids, pad_id, chunk, seed, round_, samples_per_prompt,
                                      max_new_tokens, temperature, top_p, engine)
                advance(len(chunk))
            rundir.write_parquet(shard_path(work_dir, i), pd.DataFrame(rows, columns=SAMPLE_COLUMNS))
            rundir.fault_point(f"gen:{i}")
    frames = [pd.read_parquet(shard_path(work_dir, i)) for i in todo]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SAMPLE_COLUMNS)


def _sample_chunk(model, tokenizer, stop_ids, pad_id, chunk: pd.DataFrame, seed, round_, k, max_new_tokens,
                  temperature, top_p, engine=None) -> list[dict]:
    """All K samples of each prompt in ``chunk``: (HF) one keyed-sampling batch, or (vLLM) one
    ``n=K`` request per prompt; rows in (prompt, sample_id) order."""
    seqs, keys, meta = [], [], []
    for row in chunk.itertuples(index=False):
        for j in range(k):
            seqs.append(list(row.prompt_ids))
            keys.append(sample_key(seed, round_, row.prompt_id, j))
            meta.append((row.prompt_id, j, row.prompt))
    if engine is None:
        outs = _generate_batch(model, pad_id, stop_ids, seqs, keys, max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p)
    else:
        from dicekit.round.vllm_backend import sample_prompts

        outs = [(r, f, float("nan") if lp is None else lp) for r, f, lp in sample_prompts(
            engine, [list(p) for p in chunk["prompt_ids"]], list(chunk["prompt_id"]), seed=seed, round_=round_,
            samples_per_prompt=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            stop_ids=stop_ids)]
    rows = []
    for (pid, j, prompt), p_ids, (r_ids, reason, logp_sampler) in zip(meta, seqs, outs):
        text = decode_response(tokenizer, r_ids, stop_ids)
        rows.append({"prompt_id": pid, "sample_id": j, "prompt": prompt if isinstance(prompt, str) else str(prompt),
                     "response": text, "prompt_ids": p_ids, "response_ids": r_ids,
                     "n_tokens": len(r_ids), "n_chars": response_chars(text), "finish_reason": reason,
                     "logp_sampler": logp_sampler})
    return rows


def mark_valid(samples: pd.DataFrame, *, drop_truncated: bool, min_chars: int, max_chars: int,
               min_valid_samples: int) -> pd.Series:
    """The official filters: truncated samples, ``n_chars <= min_chars`` or ``>= max_chars``, and every
    sample of a prompt with fewer than ``min_valid_samples`` valid samples."""
    ok = (samples["n_chars"] > min_chars) & (samples["n_chars"] < max_chars)
    if drop_truncated:
        ok &= samples["finish_reason"] == "stop"
    enough = ok.groupby(samples["prompt_id"]).transform("sum") >= min_valid_samples
    return (ok & enough).astype(bool)


def complete(model, tokenizer, prompts: list, *, max_new_tokens: int = 512, temperature: float = 0.0,
             top_p: float = 1.0, seed: int = 0, batch_size: int = 16, quiet: bool = True) -> list[str]:
    """One response per prompt (text or message list), chat template applied; greedy by default."""
    from dicekit.models import prompt_ids as templated, stop_token_ids

    stop_ids = stop_token_ids(model, tokenizer)
    ids = [templated(tokenizer, p) for p in prompts]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out: list[str] = [""] * len(prompts)
    with bar("generating", len(prompts), quiet) as advance:
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            keys = [sample_key(seed, 0, str(int(i)), 0) for i in idx]
            res = _generate_batch(model, int(tokenizer.pad_token_id), stop_ids, [ids[i] for i in idx], keys,
                                  max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
            for i, (r_ids, _, _) in zip(idx, res):
                out[i] = decode_response(tokenizer, r_ids, stop_ids)
            advance(len(idx))
    return out
