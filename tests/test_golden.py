"""Golden numbers of one tiny end-to-end round: a change of behaviour fails here, not in a report diff.

The round: ``run_round`` on the ``tiny_world`` fixture with the ``round_values`` settings
(tests/conftest.py: 12 prompts × K = 4 samples of at most 16 tokens at T = 1, γ = 0.5, 3 DPO steps of
4 pairs at lr 1e-3), torch on one thread (the autouse fixture), seed 42.

How the pinned values were obtained: this round was run once with the code of the commit that added
this file (CPU wheel torch 2.13.0, transformers 5.17, trl 1.16.0, on an x86-64 AMD EPYC), and the
numbers were copied from its ``metrics.json`` and ``train_log.jsonl``. They are a regression pin,
not a result worked out by hand. A change that is *meant* to alter a round (sampling, filtering,
scoring, α search, pairing, replay, training) updates them in the same commit and says why; any
other change must leave them alone.

Tolerances. Counts and α* are compared exactly: α* is a point of the 0.001 grid and the counts are
integers; float noise could move them only through an exact tie. The floats get an absolute tolerance
of 1e-4, which absorbs float rounding across BLAS builds, CPU instruction sets and thread counts but
not a change of behaviour. Measured on the same machine: the same round with torch on two threads
(other BLAS blocking) moved these floats by at most 5e-7 and left counts and α* unchanged; the same
round with seed 43 (other samples, so other pairs and training rows) gave α* 0.043, 43 valid samples,
a mean reward margin 0.44 nats lower and a last loss 0.026 higher. The first logged loss has a tighter
bound for a reason of its own: at step 1 the policy *is* the reference, and the reference log-probs
are dicekit's own scores of the same token IDs, so DPO's loss is −log σ(0) = ln 2 up to the
difference between TRL's forward and the scorer's (≤ 1e-4 nats, times β = 0.1).
"""

import json
import math

import pytest

from dicekit.config import RoundConfig, build
from dicekit.round.run import run_round

# Obtained as the module docstring says (one run, values copied from the round's files).
GOLDEN = {
    "n_samples": 48,
    "n_valid_samples": 45,
    "n_truncated": 3,
    "alpha_star": 0.138,
    "n_pairs_generated": 12,
    "n_pairs_offline": 12,
}
GOLDEN_FLOATS = {  # name: (value, absolute tolerance)
    "mean_reward_margin": (3.352171619733175, 1e-4),  # metrics.json: mean reward(chosen) − reward(rejected), nats
    "first_loss": (0.6931471824645996, 1e-5),  # train_log.jsonl step 1
    "first_logps_chosen": (-14.534956932067871, 1e-4),  # step 1: mean summed log-prob of the batch's chosen
    "first_logps_rejected": (-14.508421421051025, 1e-4),
    "last_loss": (0.6633837223052979, 1e-4),  # step 3, after two updates
}


def test_tiny_round_matches_its_golden_numbers(round_values):
    rdir = run_round(build(RoundConfig, round_values, "golden"))
    metrics = json.loads((rdir / "metrics.json").read_text())
    steps = [row for row in map(json.loads, (rdir / "train_log.jsonl").read_text().splitlines()) if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2, 3]
    got = {k: metrics[k] for k in GOLDEN}
    assert got == GOLDEN
    floats = {"mean_reward_margin": metrics["mean_reward_margin"], "first_loss": steps[0]["loss"],
              "first_logps_chosen": steps[0]["logps/chosen"], "first_logps_rejected": steps[0]["logps/rejected"],
              "last_loss": steps[-1]["loss"]}
    for name, (value, tol) in GOLDEN_FLOATS.items():
        assert floats[name] == pytest.approx(value, abs=tol), name
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at step 1
