"""Reward-accuracy math on hand-worked pairs (milliseconds)."""

import numpy as np
import pandas as pd
import pytest

from dicekit.evals import reward_accuracy as RA
from dicekit.analysis.rankers import expected_rating, oracle_pairs_from_samples, ranker_row


def frame(rows, **extra):
    """rows: (chosen_reward, rejected_reward, chosen_logp_policy, rejected_logp_policy,
    chosen_n_tokens, rejected_n_tokens, chosen_length, rejected_length)."""
    cols = ["chosen_reward", "rejected_reward", "chosen_logp_policy", "rejected_logp_policy",
            "chosen_n_tokens", "rejected_n_tokens", "chosen_length", "rejected_length"]
    df = pd.DataFrame(rows, columns=cols)
    df["chosen_logp_ref"] = df["chosen_logp_policy"] - df["chosen_reward"]
    df["rejected_logp_ref"] = df["rejected_logp_policy"] - df["rejected_reward"]
    return df.assign(**extra)


def test_hand_worked_accuracy_ties_count_as_wrong():
    """rewards (c, r) = (2, 1), (0, 3), (1, 1), (5, -1): margins 1, -3, 0, 6 -> right, wrong, tie, right.
    Ties are wrong (RewardBench's rule): accuracy 2/4 = 0.5, not 2/3 or 2.5/4."""
    assert RA.accuracy([1, -3, 0, 6]) == 0.5
    assert RA.accuracy([np.nan, 1]) == 0.5  # a missing score is not a win either
    assert np.isnan(RA.accuracy([]))


def test_variants_hand_worked():
    """Pair 1: reward 2 vs 1, logp_policy -10 (5 tokens, 100 chars) vs -4 (2 tokens, 20 chars).
      dpo      2 - 1 = 1                      -> right
      ref_free -10 - (-4) = -6                -> wrong
      avg      -10/5 - (-4/2) = -2 + 2 = 0    -> tie: wrong
      lr, α = 0.02: (2 - 2) - (1 - 0.4) = -0.6 -> wrong
      longer   100 - 20 = 80                  -> right
    Pair 2: reward 0 vs 3, logp_policy -2 (4 tok, 10 ch) vs -9 (3 tok, 40 ch).
      dpo -3 wrong; ref_free 7 right; avg -0.5 + 3 = 2.5 right; lr (0 - 0.2) - (3 - 0.8) = -2.4 wrong; longer -30 wrong.
    """
    df = frame([(2, 1, -10, -4, 5, 2, 100, 20), (0, 3, -2, -9, 4, 3, 10, 40)])
    m = RA.margins(df, 0.02)
    np.testing.assert_allclose(m["dpo"], [1, -3])
    np.testing.assert_allclose(m["ref_free"], [-6, 7])
    np.testing.assert_allclose(m["avg"], [0, 2.5])
    np.testing.assert_allclose(m["lr"], [-0.6, -2.4])
    np.testing.assert_allclose(m["longer"], [80, -30])
    s = RA.summarize(df, 0.02, n_boot=50)
    assert {k: s["overall"][k]["accuracy"] for k in m} == {"dpo": 0.5, "ref_free": 0.5, "avg": 0.5, "lr": 0.0, "longer": 0.5}
    assert s["n_ties"]["avg"] == 1 and s["n_ties"]["dpo"] == 0


def test_length_buckets_where_longer_wins_is_exactly_right():
    """Eight pairs whose chosen response is always the longer one (diffs 5..300 chars): the
    "longer wins" rule is right on every pair. The implicit reward here is 0.1·length − 3·[chosen],
    so its margin is 0.1·diff − 3: right iff diff > 30. Edges [30] split the set into
    "0 to 30" (diffs 5, 10, 20, 30: longer 4/4, reward 0/4 — at 30 the margin is 0, a tie) and
    "> 30" (diffs 40, 80, 160, 300: both 4/4). Overall the reward gets 4/8, longer wins 8/8."""
    diffs = np.array([5, 10, 20, 30, 40, 80, 160, 300], dtype=float)
    rej_len = np.full(8, 50.0)
    ch_len = rej_len + diffs
    rows = [(0.1 * c - 3, 0.1 * r, -1, -1, 1, 1, c, r) for c, r in zip(ch_len, rej_len)]
    s = RA.summarize(frame(rows), 0.0, edges=[30], n_boot=200)
    assert s["overall"]["longer"]["accuracy"] == 1.0
    assert s["overall"]["longer"]["ci_low"] == 1.0 == s["overall"]["longer"]["ci_high"]
    assert s["overall"]["dpo"]["accuracy"] == 0.5
    by = {b["bucket"]: b for b in s["by_length"]}
    assert list(by) == ["0 to 30", "> 30"]  # empty buckets (negative, zero) are left out
    assert by["0 to 30"]["n"] == 4 and by["0 to 30"]["longer"]["accuracy"] == 1.0 and by["0 to 30"]["dpo"]["accuracy"] == 0.0
    assert by["> 30"]["n"] == 4 and by["> 30"]["longer"]["accuracy"] == 1.0 and by["> 30"]["dpo"]["accuracy"] == 1.0


def test_bucket_edges_and_labels():
    idx, labels = RA.length_buckets([-80, -50, -10, 0, 30, 50, 51], [50])
    assert labels == ["< -50", "-50 to 0", "= 0", "0 to 50", "> 50"]
    assert idx.tolist() == [0, 1, 1, 2, 3, 3, 4]
    idx, labels = RA.length_buckets([-1, 0, 2], [])
    assert labels == ["< 0", "= 0", "> 0"] and idx.tolist() == [0, 1, 2]
    assert RA.default_edges([0, 10, -30, 20]) == [20.0]  # median of |10|, |30|, |20|


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    hits = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=float)
    a = RA.bootstrap_ci(hits, 500, seed=3)
    assert np.array_equal(a, RA.bootstrap_ci(hits, 500, seed=3))
    assert a[0, 0] < 0.7 < a[0, 1] and 0 <= a[0, 0] and a[0, 1] <= 1
    assert np.isnan(RA.bootstrap_ci(np.array([1.0]), 100)).all()


def test_rewardbench_sections_hand_worked():
    """Chat = (1.0·100 + 0.5·28) / 128 = 0.890625; Reasoning with math-prm 0 (counted 984) and the six
    code subsets 1 (164 each = 984): 0.5. Score = mean of the two sections present."""
    acc = {"alpacaeval-easy": 1.0, "mt-bench-easy": 0.5, "math-prm": 0.0, "not-a-subset": 0.0,
           **{f"hep-{x}": 1.0 for x in ("cpp", "go", "java", "js", "python", "rust")}}
    s = RA.rewardbench_sections(acc)
    assert s["Chat"] == pytest.approx(0.890625)
    assert s["Reasoning"] == pytest.approx(0.5)
    assert set(s) == {"Chat", "Reasoning", "Score"} and s["Score"] == pytest.approx((0.890625 + 0.5) / 2)
    assert sum(RA.REWARDBENCH_EXAMPLE_COUNTS[x] for x in RA.REWARDBENCH_SECTIONS["Safety"]) == 740


def test_subsets_rewardbench_mode_and_truth():
    """Three pairs: dpo margins 1, -1, 0 in subsets alpacaeval-easy, alpacaeval-easy, donotanswer;
    truth +1, -1, nan. By subset: alpacaeval-easy 1/2, donotanswer 0/1. Truth decides 2 pairs: the
    labels agree on 1 (the second is really worse-labelled); dpo's margin × truth = 1, +1 -> 2/2."""
    df = frame([(1, 0, -1, -1, 1, 1, 10, 10), (0, 1, -1, -1, 1, 1, 10, 10), (0, 0, -1, -1, 1, 1, 10, 10)],
               subset=["alpacaeval-easy", "alpacaeval-easy", "donotanswer"], truth=[1, -1, np.nan])
    s = RA.summarize(df, 0.0, n_boot=20, rewardbench=True)
    by = {b["subset"]: b for b in s["by_subset"]}
    assert by["alpacaeval-easy"]["dpo"]["accuracy"] == 0.5 and by["donotanswer"]["dpo"]["accuracy"] == 0.0
    assert s["rewardbench"]["dpo"] == {"Chat": 0.5, "Safety": 0.0, "Score": 0.25}
    t = s["truth"]
    assert (t["n_decided"], t["n_equal"], t["n_unknown"]) == (2, 0, 1)
    assert t["labels"]["accuracy"] == 0.5 and t["dpo"]["accuracy"] == 1.0
    assert RA.truth_from_quality([0.5, 0.2, 0.3, np.nan], [0.1, 0.2, 0.9, 1]).tolist()[:3] == [1, 0, -1]


def test_judge_expected_rating_and_ranker_rows():
    """Equal logits over the six ratings -> mean of 0..5 = 2.5; one dominant rating -> that rating."""
    np.testing.assert_allclose(expected_rating(np.zeros((1, 6))), [2.5])
    np.testing.assert_allclose(expected_rating(np.array([[0, 0, 0, 0, 50.0, 0]])), [4.0], atol=1e-12)
    row = ranker_row("x", [3, 1, 2], [1, 1, 5], truth=[1, 1, -1], n_boot=20)
    assert row["accuracy"] == pytest.approx(1 / 3) and row["n_ties"] == 1
    assert row["truth_accuracy"] == pytest.approx(2 / 3)  # pair 3: truth says rejected is better, and it scores higher


def test_oracle_pairs_from_samples():
    """Prompt a: qualities 0.2, 0.2, 0.9 -> two eligible pairs (0,2) and (1,2), both with sample 2 chosen;
    prompt b: all equal -> no pair."""
    rows = []
    for pid, qs in (("a", [0.2, 0.2, 0.9]), ("b", [0.5, 0.5])):
        for k, q in enumerate(qs):
            rows.append({"prompt_id": pid, "sample_id": k, "prompt": pid, "response": f"{q}|{k}", "valid": True,
                         "prompt_ids": [1], "response_ids": [k + 2]})
    pairs = oracle_pairs_from_samples(pd.DataFrame(rows), lambda p, r: float(r.split("|")[0]), 5, seed=0)
    assert len(pairs) == 2 and set(pairs["prompt_id"]) == {"a"}
    assert (pairs["chosen_sample_id"] == 2).all() and sorted(pairs["rejected_sample_id"]) == [0, 1]
    assert (pairs["truth"] == 1).all() and (pairs["chosen_ids"].map(list) == pd.Series([[4], [4]])).all()


def test_judge_needs_single_token_digits():
    from dicekit.analysis.rankers import JudgeUnavailable, rating_token_ids

    class Tok:
        name_or_path, unk_token_id = "stub", 0

        def __init__(self, table):
            self.table = table

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": self.table.get(text, [0])}

    assert rating_token_ids(Tok({str(k): [10 + k] for k in range(6)})) == [10, 11, 12, 13, 14, 15]
    with pytest.raises(JudgeUnavailable, match="digit 0"):
        rating_token_ids(Tok({str(k): [10 + k] for k in range(1, 6)}))  # "0" -> unknown token
    with pytest.raises(JudgeUnavailable, match="digit 5"):
        rating_token_ids(Tok({**{str(k): [10 + k] for k in range(5)}, "5": [3, 4]}))  # two tokens
