"""Counter-based sampling: each sample's random stream depends only on its own key.

A sample's key is a 64-bit hash of (seed, round, prompt_id, sample_id); the uniform number used at
decoding step s is splitmix64(key + s·φ) mapped to [0, 1). The next token is drawn by inverse CDF
from the temperature-scaled, top-p-truncated distribution, so one uniform per step suffices and no
generator state is shared between rows: the samples of a prompt are the same whatever batch they
were generated in or wherever a resumed run restarted.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from dicekit.core.objectives import logits_logps

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def sample_key(seed: int, round_: int, prompt_id: str, sample_id: int) -> int:
    """64-bit key of one sample (stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}\x1f{round_}\x1f{prompt_id}\x1f{sample_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """splitmix64 of (key + step·φ), as float64 in [0, 1); vectorised over keys (uint64)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(step + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def choose_tokens(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float,
                  top_k_first: int = 1024) -> torch.Tensor:
    """Next token per row from raw logits (B, V) and one uniform per row (B,).

    temperature 0 = greedy. Otherwise p = softmax(logits / T), and the token is the first whose
    cumulative probability exceeds u × (total mass), walking the vocabulary in token-id order when
    top_p = 1, and in descending-probability order over the nucleus (the smallest top set whose mass
    reaches top_p, the crossing token included) when top_p < 1. The nucleus is looked for among the
    ``top_k_first`` most likely tokens first and the full vocabulary is sorted only for rows where
    those do not reach top_p — the same result, without sorting ~50k entries per row and step.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    V = probs.shape[-1]
    if top_p >= 1.0:
        return _inverse_cdf_blocked(probs, u)
    probs = probs.double()
    k = min(V, top_k_first)
    vals, order = torch.topk(probs, k, dim=-1, sorted=True)
    short = vals.sum(dim=-1) < top_p  # rows whose nucleus may reach beyond the top k
    if short.any():
        full_vals, full_order = torch.sort(probs[short], dim=-1, descending=True, stable=True)
        out = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
        out[short] = _nucleus(full_vals, full_order, u[short], top_p)
        if (~short).any():
            out[~short] = _nucleus(vals[~short], order[~short], u[~short], top_p)
        return out
    return _nucleus(vals, order, u, top_p)


def _inverse_cdf_blocked(probs: torch.Tensor, u: torch.Tensor, block: int = 256) -> torch.Tensor:
    """First token (in id order) whose cumulative probability exceeds u × total, found in two levels:
    the block of ``block`` ids by the cumulative block sums, then the token inside it (float64 sums)."""
    B, V = probs.shape
    nb = -(-V // block)
    padded = (probs if nb * block == V else torch.nn.functional.pad(probs, (0, nb * block - V))).view(B, nb, block)
    sums = padded.sum(dim=-1, dtype=torch.float64)
    cum_blocks = sums.cumsum(dim=-1)
    target = u.to(torch.float64) * cum_blocks[:, -1]
    b = _first_above(cum_blocks, target[:, None], sums)
    before = torch.where(b > 0, cum_blocks.gather(1, (b - 1).clamp(min=0)[:, None])[:, 0], torch.zeros_like(target))
    inner = padded[torch.arange(B), b].double()
    j = _first_above(inner.cumsum(dim=-1), (target - before)[:, None], inner)
    return (b * block + j).clamp(max=V - 1)


def _nucleus(sorted_p: torch.Tensor, order: torch.Tensor, u: torch.Tensor, top_p: float) -> torch.Tensor:
    keep = (sorted_p.cumsum(dim=-1) - sorted_p) < top_p
    kept = sorted_p * keep
    cum = kept.cumsum(dim=-1)
    idx = _first_above(cum, u.to(cum.dtype)[:, None] * cum[:, -1:], kept)
    return order.gather(1, idx[:, None])[:, 0]


def _first_above(cum: torch.Tensor, target: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Index of the first entry with cum > target, never one of probability 0 (rounding guard)."""
    idx = (cum <= target).sum(dim=-1).clamp(max=cum.shape[-1] - 1)
    last_nonzero = cum.shape[-1] - 1 - torch.flip(p > 0, dims=[-1]).int().argmax(dim=-1)
    return torch.minimum(idx, last_nonzero)


class KeyedSampler:
    """A transformers LogitsProcessor that performs the keyed draw itself.

    It returns scores that are −inf everywhere except the chosen token, so ``generate`` run with
    ``do_sample=False`` emits exactly that token. ``prompt_len`` is the (padded) prompt length of the
    batch, from which the decoding step is read off ``input_ids``.

    It also keeps the model's own log-probability of every token it chose, from the raw logits
    (before temperature or top-p): ``step_logps[s][b]`` = log π(token s of row b | its prefix). Summed
    up to the stop token this is the sequence's ``logp`` under the sampling model, the quantity the
    scorer would compute again (``logp_sampler`` in samples.parquet).
    """

    def __init__(self, keys: list[int], prompt_len: int, temperature: float, top_p: float):
        self.keys = np.array(keys, dtype=np.uint64)
        self.prompt_len = prompt_len
        self.temperature = temperature
        self.top_p = top_p
        self.step_logps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        u = torch.from_numpy(uniforms(self.keys, step)).to(scores.device)
        tok = choose_tokens(scores, u, self.temperature, self.top_p)
        self.step_logps.append(logits_logps(scores, tok).double().cpu())
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, tok[:, None], 0.0)
        return out
