"""Stage: summed log-probabilities of responses on their exact token IDs.

``logp = Σ_j log π(response_ids[j] | prompt_ids + response_ids[:j])`` over every response token,
the stop token included, computed on the IDs as sampled (never decode → re-encode). Sequences are
sorted by length and packed into batches of about ``tokens_per_batch`` padded tokens (right
padding); the decoder runs once per batch and the LM head + log-softmax are applied only at response
positions, ``chunk_size`` positions at a time (dicekit.core.objectives.token_logps) — the
(batch × length × vocab) tensor is never built.

The K samples of a prompt share it: the prompt is run once and its key/value cache reused for the
responses (``share_prompts``), so a prompt's tokens cost one forward instead of K.

The same function scores generated samples under π_{t-1} and π_{t-2}, offline pairs under the
training reference, and evaluation pairs for reward accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.config import CPU_CHUNK, CPU_TOKENS_PER_BATCH, GPU_CHUNK, GPU_TOKENS_PER_BATCH
from dicekit.core.objectives import token_logps
from dicekit.progress import bar


def _batches(lengths: np.ndarray, tokens_per_batch: int) -> list[np.ndarray]:
    """Index batches over sequences sorted by length (longest first), ≤ tokens_per_batch padded tokens."""
    order = np.argsort(-lengths, kind="stable")
    out, cur, width = [], [], 0
    for i in order:
        w = max(width, int(lengths[i]))
        if cur and w * (len(cur) + 1) > tokens_per_batch:
            out.append(np.array(cur))
            cur, w = [], int(lengths[i])
        cur.append(i)
        width = w
    if cur:
        out.append(np.array(cur))
    return out


def batch_sizes(model, tokens_per_batch: int | None, chunk_size: int | None) -> tuple[int, int]:
    """(tokens_per_batch, chunk_size), filling ``None`` with the default for the model's device
    (``dicekit.config.GPU_TOKENS_PER_BATCH``, ...: why they differ is written there)."""
    gpu = next(model.parameters()).device.type != "cpu"
    return (tokens_per_batch or (GPU_TOKENS_PER_BATCH if gpu else CPU_TOKENS_PER_BATCH),
            chunk_size or (GPU_CHUNK if gpu else CPU_CHUNK))


def _lm_head(model):
    head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return head.weight, getattr(head, "bias", None), softcap


def score_sequences(model, prompt_ids: list, response_ids: list, *, tokens_per_batch: int | None = None,
                    chunk_size: int | None = None, per_token: bool = False, quiet: bool = True, label: str = "scoring",
                    share_prompts: bool = True):
    """Summed response log-probs (float64 array, nats), and per-token arrays if ``per_token``.

    With ``share_prompts`` (default), responses that share a prompt (the K samples of a prompt) run the
    prompt through the decoder once and reuse its key/value cache; other sequences are scored whole.
    Identical (prompt, response) sequences — a prompt's K samples often repeat a short answer — are
    scored once. ``tokens_per_batch`` / ``chunk_size``: ``None`` picks the default for the model's
    device (:func:`batch_sizes`).
    """
    keys = [(tuple(int(t) for t in p), tuple(int(t) for t in r)) for p, r in zip(prompt_ids, response_ids)]
    first: dict[tuple, int] = {}
    where = np.array([first.setdefault(k, len(first)) for k in keys], dtype=np.int64)
    if len(first) < len(keys):
        uniq = [k for k in first]
        got = score_sequences(model, [list(p) for p, _ in uniq], [list(r) for _, r in uniq],
                              tokens_per_batch=tokens_per_batch, chunk_size=chunk_size, per_token=per_token,
                              quiet=quiet, label=label, share_prompts=share_prompts)
        if per_token:
            return got[0][where], [got[1][j].copy() for j in where]
        return got[where]
    return _score_unique(model, prompt_ids, response_ids, tokens_per_batch, chunk_size, per_token, quiet, label,
                         share_prompts)


def _score_unique(model, prompt_ids, response_ids, tokens_per_batch, chunk_size, per_token, quiet, label,
                  share_prompts):
    import torch

    tokens_per_batch, chunk_size = batch_sizes(model, tokens_per_batch, chunk_size)

    n = len(prompt_ids)
    total = np.zeros(n, dtype=np.float64)
    tokens: list = [None] * n

    def put(i, piece):
        total[i] = piece.sum()
        if per_token:
            tokens[i] = piece.astype(np.float32)

    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prompt_ids):
        groups.setdefault(tuple(int(t) for t in p), []).append(i)
    shared = [g for g in groups.values() if share_prompts and len(g) > 1]
    single = sorted(i for g in groups.values() if not (share_prompts and len(g) > 1) for i in g)
    with torch.no_grad(), bar(label, n, quiet) as advance:
        for g in shared:
            for idx, piece in _score_shared(model, list(prompt_ids[g[0]]), [response_ids[i] for i in g], g,
                                            tokens_per_batch, chunk_size):
                put(idx, piece)
            advance(len(g))
        lengths = np.array([len(prompt_ids[i]) + len(response_ids[i]) for i in single], dtype=np.int64)
        for b in _batches(lengths, tokens_per_batch):
            idx = [single[j] for j in b]
            for i, piece in zip(idx, _score_whole(model, [prompt_ids[i] for i in idx], [response_ids[i] for i in idx],
                                                  chunk_size)):
                put(i, piece)
            advance(len(idx))
    return (total, tokens) if per_token else total


def _score_whole(model, prompts: list, responses: list, chunk_size: int) -> list[np.ndarray]:
    """Per-token log-probs of each response, sequences right-padded into one batch."""
    import torch

    device = next(model.parameters()).device
    weight, bias, softcap = _lm_head(model)
    width = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    rows, cols = [], []
    for b, (p, r) in enumerate(zip(prompts, responses)):
        seq = list(p) + list(r)
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, : len(seq)] = 1
        rows += [b] * len(r)
        cols += list(range(len(p), len(seq)))
    ids, mask = ids.to(device), mask.to(device)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
    lp = token_logps(hidden[rows_t, cols_t - 1], weight, ids[rows_t, cols_t], chunk_size, bias, softcap)
    return _split(lp, [len(r) for r in responses])


def _score_shared(model, prompt: list[int], responses: list, index: list[int], tokens_per_batch: int, chunk_size: int):
    """Yield (index, per-token log-probs) for responses sharing ``prompt``: the prompt's KV cache is
    computed once and repeated for each batch of responses."""
    import copy

    import torch

    device = next(model.parameters()).device
    weight, bias, softcap = _lm_head(model)
    decoder = model.get_decoder()
    P = len(prompt)
    out = decoder(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    cache, h_last = out.past_key_values, out.last_hidden_state[0, -1]
    lengths = np.array([len(r) for r in responses], dtype=np.int64)
    for b in _batches(lengths + P, tokens_per_batch):  # rows × (prompt + response): the attention and cache size
        R = int(lengths[b].max())
        ids = torch.zeros((len(b), R), dtype=torch.long)
        mask = torch.zeros((len(b), P + R), dtype=torch.long)
        mask[:, :P] = 1
        for row, j in enumerate(b):
            ids[row, : lengths[j]] = torch.tensor(list(responses[j]))
            mask[row, P : P + lengths[j]] = 1
        ids, mask = ids.to(device), mask.to(device)
        c = copy.deepcopy(cache)
        c.batch_repeat_interleave(len(b))
        pos = torch.arange(P, P + R, device=device)[None].expand(len(b), R)
        hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=c,
                         use_cache=True).last_hidden_state
        # token 0 of every response is predicted by the prompt's last position; token j by response position j-1
        hs = torch.cat([h_last[None, None].expand(len(b), 1, -1), hidden[:, :-1]], dim=1)
        valid = torch.arange(R, device=device)[None] < torch.tensor(lengths[b], device=device)[:, None]
        lp = token_logps(hs[valid], weight, ids[valid], chunk_size, bias, softcap)
        for j, piece in zip(b, _split(lp, lengths[b].tolist())):
            yield index[j], piece


def _split(lp, sizes: list[int]) -> list[np.ndarray]:
    flat = lp.double().cpu().numpy()
    return np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []


def score_samples(model, samples: pd.DataFrame, work_dir: Path, *, column: str, tokens_per_batch: int | None,
                  shard_rows: int = 1024, quiet: bool = False, label: str = "scoring") -> pd.Series:
    """Score ``samples`` (prompt_id, sample_id, prompt_ids, response_ids) in resumable shards under
    ``work_dir``; returns ``column`` aligned with ``samples.index``. Shards hold fixed row ranges of the
    (deterministically ordered) input, written atomically; existing shards are reused."""
    work_dir.mkdir(parents=True, exist_ok=True)
    n = len(samples)
    ranges = [(lo, min(lo + shard_rows, n)) for lo in range(0, n, shard_rows)]
    parts = []
    with bar(label, n, quiet) as advance:
        for s, (lo, hi) in enumerate(ranges):
            path = work_dir / f"shard_{s:06d}.parquet"
            chunk = samples.iloc[lo:hi]
            if not path.exists():
                vals = score_sequences(model, list(chunk["prompt_ids"]), list(chunk["response_ids"]),
                                       tokens_per_batch=tokens_per_batch)
                rundir.write_parquet(path, pd.DataFrame({"prompt_id": chunk["prompt_id"].to_numpy(),
                                                         "sample_id": chunk["sample_id"].to_numpy(), column: vals}))
                rundir.fault_point(f"{work_dir.name}:{s}")
            part = pd.read_parquet(path)
            if not (np.array_equal(part["prompt_id"].to_numpy(), chunk["prompt_id"].to_numpy())
                    and np.array_equal(part["sample_id"].to_numpy(), chunk["sample_id"].to_numpy())):
                raise RuntimeError(f"{path}: shard does not match its samples; delete {work_dir} and re-run")
            parts.append(part[column].to_numpy())
            advance(hi - lo)
    values = np.concatenate(parts) if parts else np.zeros(0)
    return pd.Series(values, index=samples.index, name=column)
