"""Stage: summed log-probabilities of responses on their exact token IDs.

``logp = Σ_j log π(response_ids[j] | prompt_ids + response_ids[:j])`` over every response token,
the stop token included, computed on the IDs as sampled (never decode → re-encode). Sequences are
sorted by length and packed into batches of about ``tokens_per_batch`` padded tokens (right
padding); the decoder runs once per batch and the LM head + log-softmax are applied only at response
positions, ``chunk_size`` positions at a time (dicekit.objectives.token_logps) — the
(batch × length × vocab) tensor is never built.

The same function scores generated samples under π_{t-1} and π_{t-2}, offline pairs under the
training reference, and evaluation pairs for reward accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.objectives import token_logps
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


def _lm_head(model):
    head = model.get_output_embeddings()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return head.weight, getattr(head, "bias", None), softcap


def score_sequences(model, prompt_ids: list, response_ids: list, *, tokens_per_batch: int = 16384,
                    chunk_size: int = 1024, per_token: bool = False, quiet: bool = True, label: str = "scoring"):
    """Summed response log-probs (float64 array, nats), and per-token arrays if ``per_token``."""
    import torch

    n = len(prompt_ids)
    lengths = np.array([len(p) + len(r) for p, r in zip(prompt_ids, response_ids)], dtype=np.int64)
    total = np.zeros(n, dtype=np.float64)
    tokens: list = [None] * n
    device = next(model.parameters()).device
    weight, bias, softcap = _lm_head(model)
    decoder = model.get_decoder()
    with torch.no_grad(), bar(label, n, quiet) as advance:
        for idx in _batches(lengths, tokens_per_batch):
            width = int(lengths[idx].max())
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            tgt_rows, tgt_cols = [], []
            for b, i in enumerate(idx):
                seq = list(prompt_ids[i]) + list(response_ids[i])
                ids[b, : len(seq)] = torch.tensor(seq)
                mask[b, : len(seq)] = 1
                p = len(prompt_ids[i])
                tgt_rows += [b] * len(response_ids[i])
                tgt_cols += list(range(p, len(seq)))
            hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            rows = torch.tensor(tgt_rows, device=device)
            cols = torch.tensor(tgt_cols, device=device)
            lp = token_logps(hidden[rows, cols - 1], weight, ids.to(device)[rows, cols], chunk_size, bias, softcap)
            lp = lp.double().cpu().numpy()
            offset = 0
            for i in idx:
                k = len(response_ids[i])
                piece = lp[offset : offset + k]
                total[i] = piece.sum()
                if per_token:
                    tokens[i] = piece.astype(np.float32)
                offset += k
            advance(len(idx))
    return (total, tokens) if per_token else total


def score_samples(model, samples: pd.DataFrame, work_dir: Path, *, column: str, tokens_per_batch: int,
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
