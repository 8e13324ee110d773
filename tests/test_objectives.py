"""Log-probs, implicit reward and DPO loss against numbers worked by hand."""

import math

import numpy as np
import torch

from dicekit.core.objectives import dpo_sigmoid_loss, implicit_reward, sequence_logps_from_logits, token_logps


def test_sequence_logps_on_a_hand_made_logit_table():
    """Vocab of 2, sequence [0, 1, 1], response = the last two tokens.

    position 0 logits (0, ln 3) → p(token 1) = 3/4;  position 1 logits (0, 0) → p(token 1) = 1/2.
    logp = ln(3/4) + ln(1/2) = ln(3/8).
    """
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, 0.0], [5.0, 5.0]]])
    ids = torch.tensor([[0, 1, 1]])
    mask = torch.tensor([[0, 1, 1]])
    assert abs(sequence_logps_from_logits(logits, ids, mask).item() - math.log(3 / 8)) < 1e-6


def test_token_logps_chunked_equals_full_softmax():
    torch.manual_seed(0)
    h = torch.randn(37, 8)
    W = torch.randn(50, 8)
    tgt = torch.randint(0, 50, (37,))
    full = torch.log_softmax(h @ W.T, dim=-1).gather(1, tgt[:, None])[:, 0]
    for chunk in (1, 5, 37, 100):
        assert torch.allclose(token_logps(h, W, tgt, chunk_size=chunk), full, atol=1e-5)


def test_implicit_reward_is_the_raw_log_ratio():
    assert implicit_reward(-10.0, -12.5) == 2.5
    assert np.allclose(implicit_reward([-1.0, -3.0], [-2.0, -1.0]), [1.0, -2.0])


def test_dpo_loss_by_hand():
    """β = 0.1; chosen ratio (−10) − (−12) = 2, rejected ratio (−9) − (−8) = −1 → margin 3;
    loss = −log σ(0.3) = log(1 + e^{−0.3}) = 0.554355…"""
    loss = dpo_sigmoid_loss(torch.tensor(-10.0), torch.tensor(-9.0), torch.tensor(-12.0), torch.tensor(-8.0), 0.1)
    assert abs(loss.item() - math.log(1 + math.exp(-0.3))) < 1e-6
