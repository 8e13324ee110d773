"""Keyed sampling: a sample depends on its key only, and the draw follows temperature/top-p."""

import numpy as np
import torch

from dicekit.round.sampling import choose_tokens, sample_key, uniforms


def test_uniforms_are_per_key_and_per_step():
    keys = np.array([sample_key(1, 1, "p", k) for k in range(4)], dtype=np.uint64)
    u0 = uniforms(keys, 0)
    assert np.array_equal(u0[2:], uniforms(keys[2:], 0))  # independent of the other rows
    assert not np.array_equal(u0, uniforms(keys, 1))
    assert ((u0 >= 0) & (u0 < 1)).all()
    big = uniforms(np.arange(20000, dtype=np.uint64), 3)
    assert abs(big.mean() - 0.5) < 0.01


def test_choose_tokens_inverse_cdf_by_hand():
    """probs (0.5, 0.3, 0.2): u = 0.1 → token 0; u = 0.6 → token 1 (cum 0.5 ≤ 0.6 < 0.8); u = 0.9 → 2.
    With top_p = 0.6 only tokens 0 and 1 survive (mass 0.8): u = 0.6 → 0.48 < 0.5 → token 0;
    u = 0.9 → 0.72 → token 1."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]] * 3))
    u = torch.tensor([0.1, 0.6, 0.9], dtype=torch.float64)
    assert choose_tokens(logits, u, 1.0, 1.0).tolist() == [0, 1, 2]
    assert choose_tokens(logits, u, 1.0, 0.6).tolist() == [0, 0, 1]
    assert choose_tokens(logits, u, 0.0, 1.0).tolist() == [0, 0, 0]


def test_top_k_shortcut_equals_the_full_sort():
    torch.manual_seed(0)
    logits = torch.randn(64, 5000) * 3
    u = torch.from_numpy(uniforms(np.arange(64, dtype=np.uint64), 0))
    for p in (0.5, 0.9, 0.999):
        fast = choose_tokens(logits, u, 0.8, p, top_k_first=16)
        full = choose_tokens(logits, u, 0.8, p, top_k_first=5000)
        assert torch.equal(fast, full)


def test_sample_frequencies_match_temperature():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(20000, 1)
    u = torch.from_numpy(uniforms(np.arange(20000, dtype=np.uint64), 0))
    tok = choose_tokens(logits, u, 1.0, 1.0)
    freq = np.bincount(tok.numpy(), minlength=3) / 20000
    assert np.allclose(freq, [0.7, 0.2, 0.1], atol=0.015)
