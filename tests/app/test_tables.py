"""The dashboard's pure parts (app/tables.py): filters, paging, ranking at α, credit colouring."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from app import tables as T
from dicekit.view import runs
from tests.app.runfolder import ALPHAS, make_run_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run_folder(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def pairs(run):
    return runs.pair_table(runs.load_pairs(run, 1), runs.load_samples(run, 1))


def _samples(prompt_id, rewards, n_chars, valid=None, response_ids=None):
    k = len(rewards)
    return pd.DataFrame({"prompt_id": prompt_id, "sample_id": range(k), "reward": rewards, "n_chars": n_chars,
                         "n_tokens": [n // 4 for n in n_chars], "valid": valid if valid is not None else [True] * k,
                         "response_ids": response_ids if response_ids is not None else [[i] for i in range(k)]})


def test_rank_samples_worked_by_hand():
    """p0 of the fixture. reward_lr = reward − α·n_chars:

    α = 0:    5.0, 3.0, 1.0, −2.0             → chosen 0, rejected 3
    α = 0.01: 5−4 = 1.0, 3−1 = 2.0, 1−1.2 = −0.2, −2−3 = −5.0 → chosen 1, rejected 3
    """
    s = _samples("p0", [5.0, 3.0, 1.0, -2.0], [400, 100, 120, 300])
    ranked, pair = T.rank_samples(s, 0.0, "chars")
    assert pair == {"chosen": 0, "rejected": 3, "degenerate": False}
    assert list(ranked["sample_id"]) == [0, 1, 2, 3]
    ranked, pair = T.rank_samples(s, 0.01, "chars")
    assert pair == {"chosen": 1, "rejected": 3, "degenerate": False}
    assert list(ranked["sample_id"]) == [1, 0, 2, 3]
    assert ranked["reward_lr"].to_numpy() == pytest.approx([2.0, 1.0, -0.2, -5.0])
    assert list(ranked["role"]) == ["chosen", "", "", "rejected"]
    assert list(ranked["rank"]) == [1, 2, 3, 4]


def test_rank_samples_tokens_unit_ties_and_invalid():
    """Length in tokens (n_chars // 4 here: 100, 25, 37, 75). At α = 0.04: 5−4 = 1.0, 3−1 = 2.0,
    1−1.48 = −0.48, sample 3 invalid → chosen 1, rejected 2; sample 3 unranked and last."""
    s = _samples("p", [5.0, 3.0, 1.0, np.nan], [400, 100, 148, 300], valid=[True, True, True, False])
    ranked, pair = T.rank_samples(s, 0.04, "tokens")
    assert (pair["chosen"], pair["rejected"]) == (1, 2)
    assert list(ranked["role"]) == ["chosen", "", "rejected", "invalid"]
    assert ranked["rank"].isna().tolist() == [False, False, False, True]
    # equal scores: chosen = the lowest sample_id (argmax), the pair is degenerate
    tie, pair = T.rank_samples(_samples("p", [1.0, 1.0], [10, 10]), 0.0, "chars")
    assert pair == {"chosen": 0, "rejected": 0, "degenerate": True}
    # identical token IDs with different scores (numerical noise): degenerate too
    _, pair = T.rank_samples(_samples("p", [1.0, 1.1], [10, 10], response_ids=[[7, 8], [7, 8]]), 0.0, "chars")
    assert pair["degenerate"]
    _, pair = T.rank_samples(_samples("p", [np.nan], [10], valid=[False]), 0.0, "chars")
    assert pair["chosen"] is None


def test_alpha_regions_find_the_flip():
    """p0 flips where 5 − 400α = 3 − 100α, i.e. α = 2/300 ≈ 0.00667: grid 0..0.006 → (0, 3), 0.007.. → (1, 3)."""
    s = _samples("p0", [5.0, 3.0, 1.0, -2.0], [400, 100, 120, 300])
    regions = T.alpha_regions(s, ALPHAS, "chars")
    assert regions[["alpha_from", "alpha_to"]].to_numpy().tolist() == [[0.0, 0.006], [0.007, 0.02]]
    assert regions[["chosen", "rejected"]].to_numpy().tolist() == [[0, 3], [1, 3]]


def test_len_diffs_at_match_the_fixture_by_hand(run):
    """Round 1, α = 0: p0 400−300, p1 150−90, p2 90−250, p3 300−100; α = 0.007: p0 becomes 100−300."""
    d = T.len_diffs_at(runs.load_samples(run, 1), [0.0, 0.007], "chars")
    assert d[d["alpha"] == 0.0]["len_diff"].tolist() == [100, 60, -160, 200]
    assert d[d["alpha"] == 0.007]["len_diff"].tolist() == [-200, 60, -160, 200]
    assert np.mean([-200, 60, -160, 200]) == pytest.approx(
        runs.load_alpha_sweep(run, 1).set_index("alpha").loc[0.007, "mean_len_diff"])


def test_histograms_share_bins_across_alphas():
    diffs = pd.DataFrame({"alpha": [0.0, 0.0, 0.0, 0.01, 0.01], "len_diff": [-10.0, 0.0, 10.0, 10.0, 10.0]})
    h = T.histograms(diffs, bins=2)  # edges −10, 0, 10 (the last bin closed)
    assert h.to_numpy().tolist() == [[0.0, -10.0, 0.0, 1], [0.0, 0.0, 10.0, 2], [0.01, -10.0, 0.0, 0], [0.01, 0.0, 10.0, 2]]
    assert T.histograms(diffs.iloc[:0]).empty


def test_filters(pairs):
    assert len(T.filter_pairs(pairs)) == 6
    assert set(T.filter_pairs(pairs, sources=["offline"])["prompt_id"]) == {"o0", "o1"}
    assert len(T.filter_pairs(pairs, sources=[])) == 0
    # reward_lr margins at α = 0.007: p0 6.4, p1 4.58, p2 2.82, p3 1.6; offline pairs have none
    assert list(T.filter_pairs(pairs, margin=(2.0, 5.0))["prompt_id"]) == ["p1", "p2"]
    # length differences: p0 −200, p1 60, p2 −160, p3 200, o0 17, o1 −31
    assert list(T.filter_pairs(pairs, len_diff=(-40, 60))["prompt_id"]) == ["p1", "o0", "o1"]
    assert list(T.filter_pairs(pairs, len_diff=(-40, 60), sources=["offline"])["prompt_id"]) == ["o0", "o1"]
    # text: case-insensitive, in the prompt or either response
    assert list(T.filter_pairs(pairs, text="PHOTOSYNTHESIS")["prompt_id"]) == ["p0"]
    assert list(T.filter_pairs(pairs, text="window.__pwned")["prompt_id"]) == ["p1"]  # chosen response
    assert list(T.filter_pairs(pairs, text="french")["prompt_id"]) == ["o1"]
    assert list(T.filter_pairs(pairs, text="  ")["prompt_id"]) == list(pairs["prompt_id"])
    assert len(T.filter_pairs(pairs, text="(unbalanced[")) == 0  # a literal, not a regex


def test_judge_filter(run):
    p2 = runs.pair_table(runs.load_pairs(run, 2), runs.load_samples(run, 2))
    disagree = T.filter_pairs(p2, judge_disagrees=True)
    assert len(disagree) == (p2["judge_agrees"] == False).sum() > 0  # noqa: E712
    assert (disagree["chosen_judge_quality"] < disagree["rejected_judge_quality"]).all()


def test_sort_and_page():
    df = pd.DataFrame({"x": [3.0, np.nan, 1.0, 2.0, 5.0], "id": list("abcde")})
    assert list(T.sort_pairs(df, "x")["id"]) == ["c", "d", "a", "e", "b"]
    assert list(T.sort_pairs(df, "x", ascending=False)["id"]) == ["e", "a", "d", "c", "b"]  # nulls last
    assert T.sort_pairs(df, None) is df
    rows, n = T.page(df, 2, 2)
    assert (list(rows["id"]), n) == (["c", "d"], 3)
    assert list(T.page(df, 99, 2)[0]["id"]) == ["e"]  # clamped to the last page
    assert list(T.page(df, 0, 2)[0]["id"]) == ["a", "b"]
    rows, n = T.page(df.iloc[:0], 1, 50)
    assert (len(rows), n) == (0, 1)  # an empty table is one empty page


def test_100k_pairs_filter_and_page_quickly():
    """A 100k-pair table: building the search index once, then filter + sort + one page per click."""
    n = 100_000
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "needle"])
    text = pd.Series(words[rng.integers(0, 4, n)]).str.cat([" response text"] * n) + pd.Series(np.arange(n)).astype(str)
    text.iloc[[5, 77_777]] = "a needle in the haystack"
    df = pd.DataFrame({"prompt_id": np.arange(n).astype(str), "prompt": "prompt " + text, "chosen": text * 5,
                       "rejected": text, "source": np.where(rng.random(n) < 0.5, "generated", "offline"),
                       "reward_lr_margin": rng.normal(size=n), "len_diff": rng.normal(0, 100, n)})
    index = T.search_index(df)
    start = time.perf_counter()
    out = T.filter_pairs(df, sources=["generated"], margin=(0.0, 10.0), len_diff=(-50, 50), index=index)
    rows, n_pages = T.page(T.sort_pairs(out, "len_diff", ascending=False), 3, 50)
    hits = T.filter_pairs(df, text="NEEDLE", index=index)
    elapsed = time.perf_counter() - start
    assert len(rows) == 50 and n_pages == -(-len(out) // 50)
    assert (out["source"] == "generated").all() and out["reward_lr_margin"].between(0, 10).all()
    assert list(hits["prompt_id"]) == ["5", "77777"]
    assert elapsed < 3.0, f"filter + sort + page of 100k pairs took {elapsed:.2f} s"


def test_credit_html_escapes_model_text():
    out = T.credit_html(["<script>", "window.__pwned=1", "</script>", '<img src=x onerror="x">', "&"], [1.0, -2.0, 0.0, 0.5, np.nan])
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&lt;img src=x onerror=&quot;x&quot;&gt;" in out and "&amp;" in out
    assert "rgba(220,40,40,0.80)" in out  # the largest |log-ratio| gets full intensity, negative = red
    assert out.count("<span") == 5
