"""The round monitor's signals (dicekit.analysis.health) and the stabilisers' pair filters
(dicekit.core.pairs), on small hand-worked tables."""

import numpy as np
import pandas as pd
import pytest

from dicekit.core import pairs as P
from dicekit.analysis import health as H
from dicekit.world.metrics import pair_agreement


def test_pair_agreement_by_group_identical_reversed_ties_and_too_few():
    keys, agree, n = H.pair_agreement_by_group(["a"] * 3, [1, 2, 3], [1, 2, 2])
    assert list(keys) == ["a"] and agree[0] == 1.0 and n[0] == 2  # (1,2) is a truth tie: left out
    _, agree, _ = H.pair_agreement_by_group(["a"] * 3, [3, 2, 1], [1, 2, 2])
    assert agree[0] == 0.0
    _, agree, _ = H.pair_agreement_by_group(["a"] * 3, [1, 1, 3], [1, 2, 2])
    assert agree[0] == 0.75  # score tie on (0,1) counts half: (0.5 + 1) / 2
    _, agree, n = H.pair_agreement_by_group(["a", "b", "b"], [1, 2, 3], [5, 1, 1])
    assert np.isnan(agree).all() and list(n) == [0, 0]  # one sample / all truth ties: nothing decided


def test_world_pair_agreement_pools_the_groups():
    # group a: 1 of 1 pair right; group b: 0 of 2 pairs right (3 samples, truth (1,2,2), score reversed)
    agree, n = pair_agreement(["a", "a", "b", "b", "b"], [1, 2, 3, 2, 1], [1, 2, 1, 2, 2])
    assert n == 3 and agree == pytest.approx(1 / 3)


def test_consistency_identical_reversed_mixed_and_unavailable():
    g = ["p"] * 3 + ["q"] * 3
    same = H.consistency(g, [1, 2, 3, 3, 2, 1], [1, 2, 3, 3, 2, 1])
    assert same["value"] == 1.0 and same["kendall_tau"] == 1.0 and same["n"] == 2 and same["n_pairs"] == 6
    rev = H.consistency(g, [1, 2, 3, 3, 2, 1], [3, 2, 1, 1, 2, 3])
    assert rev["value"] == 0.0 and rev["kendall_tau"] == -1.0
    # the docstring's example: per prompt 1.0 and 0.0 → 0.5, τ 0, over 2 prompts and 4 pairs
    mixed = H.consistency(["p"] * 3 + ["q"] * 2, [1, 2, 3, 1, 2], [1, 2, 3, 2, 1])
    assert mixed["value"] == 0.5 and mixed["kendall_tau"] == 0.0 and mixed["n_pairs"] == 4
    assert mixed["ci_low"] == 0.0 and mixed["ci_high"] == 1.0  # two prompts: resamples give 0, 0.5 or 1
    one = H.consistency(["p", "p"], [1, 2], [1, 2])
    assert one["value"] == 1.0 and one["ci_low"] is None  # one prompt: no interval
    none = H.consistency(["p", "p"], [1, 2], [4, 4])
    assert none["value"] is None and "previous reward" in none["reason"]


def _pairs(lp_c, lp_r, n_c, n_r, rw_c=(1.0, 1.0), rw_r=(0.0, 0.0)):
    return pd.DataFrame({"chosen_reward": rw_c, "rejected_reward": rw_r, "chosen_logp_policy": lp_c,
                         "rejected_logp_policy": lp_r, "chosen_n_tokens": n_c, "rejected_n_tokens": n_r,
                         "chosen_length": [5.0, 5.0], "rejected_length": [5.0, 5.0]})


def test_variant_agreement_hand_worked():
    v = H.variant_agreement(_pairs([-2, -6], [-4, -3], [2, 2], [2, 3]), alpha=0.0)
    assert v["ref_free"]["value"] == 0.5 and v["avg"]["value"] == 0.5 and v["value"] == 0.5 and v["n"] == 2
    agree = H.variant_agreement(_pairs([-2, -1], [-4, -3], [2, 2], [2, 2]), alpha=0.0)
    assert agree["value"] == 1.0 and agree["ci_low"] == 1.0
    tie = H.variant_agreement(_pairs([-2, -2], [-2, -2], [2, 2], [2, 2]), alpha=0.0)
    assert tie["value"] == 0.0  # equal log-probs: a tie counts as disagreeing
    assert H.variant_agreement(_pairs([-2, -1], [-4, -3], [2, 2], [2, 2]).iloc[:0], 0.0)["value"] is None


def test_heldout_from_summary_and_no_pairs():
    from dicekit.evals.reward_accuracy import summarize

    df = pd.DataFrame({"chosen_reward": [2.0, 0.0, 1.0, 5.0], "rejected_reward": [1.0, 3.0, 1.0, -1.0],
                       "chosen_logp_policy": [-1.0] * 4, "rejected_logp_policy": [-2.0] * 4,
                       "chosen_n_tokens": [3] * 4, "rejected_n_tokens": [3] * 4,
                       "chosen_length": [10.0, 10.0, 10.0, 10.0], "rejected_length": [10.0, 10.0, 10.0, 10.0]})
    h = H.heldout_from_summary(summarize(df, 0.1, n_boot=200))
    assert h["value"] == 0.5 and h["dpo"]["accuracy"] == 0.5 and h["n"] == 4  # right, wrong, tie, right
    assert H.heldout_from_summary(summarize(df.iloc[:0], 0.0))["value"] is None
    # heldout_dpo: the plain sum only. With rejected lengths 40 against 10 and α = 0.1 the length term
    # turns pair 3's tie into a right answer (1 − 1 = 0 against 1 − 4 = −3); pair 2 becomes a tie
    # (0 − 1 against 3 − 4), still wrong: length-regularised 0.75, plain DPO sum still 0.5
    longer = df.assign(rejected_length=[40.0] * 4)
    h2 = H.heldout_from_summary(summarize(longer, 0.1, n_boot=200))
    d = H.heldout_dpo(h2)
    assert h2["value"] == 0.75 and d["value"] == 0.5 and d["n"] == 4 and d["ci_low"] <= 0.5 <= d["ci_high"]
    assert H.heldout_dpo(H.heldout_from_summary(summarize(df.iloc[:0], 0.0)))["value"] is None
    assert H.gate_decision({"heldout_dpo": d}, "heldout_dpo", 0.63)["fallback"] is True


def test_gate_decision_path():
    health = {"heldout_accuracy": {"value": 0.55}, "consistency": {"value": None, "reason": "round 1 has no previous reward"},
              "variant_agreement": {"value": 0.7}}
    d = H.gate_decision(health, "heldout_accuracy", 0.6)
    assert d["fallback"] is True and d["value"] == 0.55 and "offline pairs only" in d["reason"]
    assert H.gate_decision(health, "heldout_accuracy", 0.5)["fallback"] is False
    assert H.gate_decision(health, "heldout_accuracy", 0.55)["fallback"] is False  # equal: not below
    d = H.gate_decision(health, "consistency", 0.6)
    assert d["fallback"] is False and "not measured" in d["reason"] and "round 1" in d["reason"]
    assert H.gate_decision({}, "variant_agreement", 0.6)["fallback"] is False
    with pytest.raises(ValueError):
        H.gate_decision(health, "oracle", 0.6)
    assert H.verdict(health)["verdict"] == "harm" and H.verdict(health, "variant_agreement")["verdict"] == "ok"
    assert H.verdict(health, "consistency")["verdict"] == "n/a" and H.verdict(health)["threshold"] == 0.6


def test_consistent_pairs_and_top_margin_pair_counts():
    assert list(P.consistent_pairs([2, 0, 1, np.nan], [1, 3, 1, 0])) == [True, False, False, False]
    assert list(P.top_margin_pairs([0.5, 3, 1, 3], 0.5)) == [False, True, False, True]
    assert list(P.top_margin_pairs([0.5, 3, 1, 3], 0.6)) == [False, True, True, True]
    assert P.top_margin_pairs([1.0, 2.0], 1.0).all() and P.top_margin_pairs([], 0.5).size == 0
    assert list(P.top_margin_pairs([2, 2, 2], 1 / 3)) == [True, False, False]  # equal margins: earlier first
    with pytest.raises(ValueError):
        P.top_margin_pairs([1.0], 0.0)
