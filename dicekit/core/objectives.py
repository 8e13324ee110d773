"""Pure math: token log-probabilities, the implicit reward, the DPO loss.

* ``token_logps(hidden, lm_head_weight, targets)``: log p(target | prefix) for selected positions,
  computed chunk by chunk so a (positions × vocab) log-softmax never exists beyond one chunk —
  the full (batch × length × vocab) tensor is never built.
* ``implicit_reward(logp_policy, logp_ref) = logp_policy - logp_ref``: the raw log-ratio of the
  paper's Eq. 3 without β (the official code stores it this way; the paper's r is β times it). This is
  the one definition used by the scorer, the pair builder, the trainer logs and the readers.
* ``dpo_sigmoid_loss``: −log σ(β·(Δ_chosen − Δ_rejected)) (Rafailov et al., Eq. 7), used by tests to
  pin TRL's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dicekit.core.reward import implicit_reward  # noqa: F401  (re-exported: the one definition)


def logits_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax of ``logits`` (N, V) at ``targets`` (N,), in fp32: ``z[t] − logsumexp(z)``."""
    z = logits.float()
    return z.gather(1, targets[:, None])[:, 0] - torch.logsumexp(z, dim=1)


@torch.no_grad()
def token_logps(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = 1024,
    lm_head_bias: torch.Tensor | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) for N selected positions, shape (N,), in fp32.

    ``hidden``: (N, H) final hidden states at the positions that *predict* each target (position j
    predicts token j+1). ``lm_head_weight``: (V, H). Logits are computed ``chunk_size`` rows at a
    time in the weight's dtype, then log-softmaxed in fp32: peak extra memory is chunk_size × V.
    ``softcap``: a model's final-logit soft-capping (c·tanh(z/c)), if it has one.
    """
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for lo in range(0, hidden.shape[0], chunk_size):
        h = hidden[lo : lo + chunk_size]
        logits = h @ lm_head_weight.T
        if lm_head_bias is not None:
            logits = logits + lm_head_bias
        logits = logits.float()
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        out[lo : lo + chunk_size] = logits_logps(logits, targets[lo : lo + chunk_size])
    return out


def sequence_logps_from_logits(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Reference implementation on full logits (B, T, V): summed log p of tokens where
    ``response_mask`` (B, T) is 1, each predicted from the previous position. Used by tests."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = logp.gather(2, input_ids[:, 1:, None])[..., 0]
    return (tok * response_mask[:, 1:]).sum(dim=1)


def dpo_sigmoid_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """Per-pair DPO loss −log σ(β·((πc − rc) − (πr − rr))). Worked example in tests/test_objectives.py."""
    margin = implicit_reward(policy_chosen, ref_chosen) - implicit_reward(policy_rejected, ref_rejected)
    return -F.logsigmoid(beta * margin)
