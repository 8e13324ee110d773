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


def choose_tokens(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next token per row from raw logits (B, V) and one uniform per row (B,).

    temperature 0 = greedy. Otherwise softmax(logits / T), keep the smallest top-probability set whose
    mass reaches top_p (the token that crosses it included), and take the first token whose cumulative
    probability exceeds u × (kept mass), in descending-probability order (ties: lower token id first).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1).double()
    sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = sorted_p.cumsum(dim=-1)
    if top_p < 1.0:
        keep = (cum - sorted_p) < top_p
        sorted_p = sorted_p * keep
        cum = sorted_p.cumsum(dim=-1)
    target = u.to(cum.dtype)[:, None] * cum[:, -1:]
    idx = (cum <= target).sum(dim=-1).clamp(max=probs.shape[-1] - 1)
    # never land on a zeroed (cut) entry: step back to the last kept one
    kept = (sorted_p > 0).sum(dim=-1) - 1
    idx = torch.minimum(idx, kept)
    return order.gather(1, idx[:, None])[:, 0]


class KeyedSampler:
    """A transformers LogitsProcessor that performs the keyed draw itself.

    It returns scores that are −inf everywhere except the chosen token, so ``generate`` run with
    ``do_sample=False`` emits exactly that token. ``prompt_len`` is the (padded) prompt length of the
    batch, from which the decoding step is read off ``input_ids``.
    """

    def __init__(self, keys: list[int], prompt_len: int, temperature: float, top_p: float):
        self.keys = np.array(keys, dtype=np.uint64)
        self.prompt_len = prompt_len
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        u = torch.from_numpy(uniforms(self.keys, step)).to(scores.device)
        tok = choose_tokens(scores, u, self.temperature, self.top_p)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, tok[:, None], 0.0)
        return out
