"""α*, pair selection and replay on tables small enough to check by eye."""

import doctest

import numpy as np
import pytest

from dicekit.core import pairs as P


def table():
    """Two prompts, three samples each (reward, length):

    prompt a: s0 (5.0, 10)  s1 (3.0, 2)  s2 (1.0, 1)
    prompt b: s0 (2.0, 8)   s1 (4.0, 12) s2 (0.0, 4)

    α = 0:   a: chosen s0 (5), rejected s2 (1) → diff 10-1 = 9;   b: s1 (4) vs s2 (0) → 12-4 = 8.  mean 8.5
    α = 0.5: a: scores 0, 2, 0.5 → chosen s1, rejected s0 (first of the tie 0,… no: min is s0 = 0)
             → diff 2-10 = -8;  b: scores -2, -2, -2 → all tied → degenerate.  mean -8 over 1 pair
    α = 0.25: a: 2.5, 2.5, 0.75 → chosen s0 (tie → lowest sample_id), rejected s2 → 9;
              b: 0, 1, -1 → chosen s1, rejected s2 → 8.  mean 8.5
    """
    pid = np.array(["a", "a", "a", "b", "b", "b"])
    sid = np.array([0, 1, 2, 0, 1, 2])
    reward = np.array([5.0, 3.0, 1.0, 2.0, 4.0, 0.0])
    length = np.array([10, 2, 1, 8, 12, 4])
    return P.pack(pid, sid, reward, length)


def test_docstring_examples():
    result = doctest.testmod(P)
    assert result.attempted > 0 and result.failed == 0


def test_reward_lr_is_eq5():
    assert P.reward_lr([5.0, 3.0], [10, 2], 0.5).tolist() == [0.0, 2.0]


def test_select_by_hand():
    g = table()
    s = P.select(g, 0.0)
    assert s.chosen_col.tolist() == [0, 1] and s.rejected_col.tolist() == [2, 2] and s.keep.all()
    s = P.select(g, 0.25)
    assert s.chosen_col.tolist() == [0, 1]  # tie 2.5 = 2.5 in prompt a → lowest sample_id
    s = P.select(g, 0.5)
    assert s.chosen_col[0] == 1 and s.rejected_col[0] == 0
    assert s.keep.tolist() == [True, False] and s.n_degenerate == 1


def test_sweep_and_alpha_star_by_hand():
    g = table()
    mean, n = P.sweep(g, [0.0, 0.25, 0.5])
    assert mean.tolist() == [8.5, 8.5, -8.0] and n.tolist() == [2, 2, 1]
    # |mean| is smallest at … 8.5, 8.5, 8 → α = 0.5
    alpha, tried, m, _ = P.search_alpha(g, [0.0, 0.25, 0.5])
    assert alpha == 0.5 and len(tried) == 3


def test_first_worsening_stops_like_the_official_code(monkeypatch):
    """|mean| over the grid 0, 0.1, 0.2, 0.3 is 9, 5, 7, 0. The official walk stops at 0.2 (worse than
    0.1) and keeps 0.1, having evaluated 0, 0.1, 0.2; the whole-grid search picks 0.3."""
    grid = np.array([0.0, 0.1, 0.2, 0.3])
    monkeypatch.setattr(P, "sweep", lambda g, a: (np.array([9.0, -5.0, 7.0, 0.0]), np.array([2, 2, 2, 2])))
    alpha, tried, mean, _ = P.search_alpha(None, grid, "first_worsening")
    assert alpha == 0.1 and tried.tolist() == [0.0, 0.1, 0.2] and mean.tolist() == [9.0, -5.0, 7.0]
    assert P.search_alpha(None, grid, "grid")[0] == 0.3


def test_first_worsening_returns_the_first_alpha_of_a_plateau():
    """One prompt, three samples (reward, length): c (1.0, 3), r (0.0, 2), L (0.5, 11).
    Scores at α: 1 − 3α, −2α, 0.5 − 11α. Chosen c while 1 − 3α > −2α (α < 1); rejected r while
    −2α < 0.5 − 11α, i.e. α < 0.5/9 ≈ 0.056, then L. Grid 0, 0.02, 0.04, 0.1, 0.2:
    diff = 3 − 2 = 1 on 0, 0.02, 0.04 (a plateau), 3 − 11 = −8 at 0.1 (worse: the walk stops there).
    The official argmin over the walked |1, 1, 1, 8| is the first: α* = 0 (the old walk kept 0.04)."""
    g = P.pack(np.array(["a"] * 3), np.arange(3), np.array([1.0, 0.0, 0.5]), np.array([3, 2, 11]))
    grid = np.array([0.0, 0.02, 0.04, 0.1, 0.2])
    assert P.sweep(g, grid)[0].tolist() == [1.0, 1.0, 1.0, -8.0, -8.0]
    alpha, tried, mean, n = P.search_alpha(g, grid, "first_worsening")
    assert alpha == 0.0 and tried.tolist() == [0.0, 0.02, 0.04, 0.1] and mean.tolist() == [1.0, 1.0, 1.0, -8.0]
    assert P.search_alpha(g, grid, "grid")[0] == 0.0
    # a flat walk never worsens: every value is walked and the first is kept
    alpha, tried, *_ = P.search_alpha(g, grid[:3], "first_worsening")
    assert alpha == 0.0 and len(tried) == 3


def test_first_worsening_compares_with_the_smallest_so_far(monkeypatch):
    """|mean| 6, 4, 4, 5, 3: 5 exceeds the minimum 4 → stop at the fourth value; α* = the first 4."""
    grid = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    monkeypatch.setattr(P, "sweep", lambda g, a: (np.array([6.0, 4.0, -4.0, 5.0, 3.0]), np.ones(5, dtype=int)))
    alpha, tried, *_ = P.search_alpha(None, grid, "first_worsening")
    assert alpha == 0.1 and tried.tolist() == [0.0, 0.1, 0.2, 0.3]


def test_response_chars_ignores_surrounding_whitespace():
    """The official code measures len(text.strip()); inner whitespace counts."""
    assert P.response_chars("Yes, it is.\n\n") == 11 and P.response_chars(" a b ") == 3
    assert P.response_chars("   ") == 0


def test_degenerate_identical_responses_and_short_groups():
    # prompt a: two samples with identical token ids (dup key 7) and different float rewards;
    # prompt b: a single valid sample → no pair.
    g = P.pack(np.array(["a", "a", "b"]), np.array([0, 1, 0]), np.array([1.0, 1.0 + 1e-9, 3.0]),
               np.array([5, 5, 2]), dup=np.array([7, 7, 9]))
    s = P.select(g, 0.0)
    assert s.keep.tolist() == [False, False]
    mean, n = P.sweep(g, [0.0, 0.1])
    assert np.isnan(mean).all() and n.tolist() == [0, 0]


def test_empty():
    g = P.pack(np.array([]), np.array([]), np.array([]), np.array([]))
    assert P.select(g, 0.1).keep.size == 0
    alpha, *_ = P.search_alpha(g, [0.0, 0.1])
    assert alpha == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweep_equals_dense_evaluation(seed):
    rng = np.random.default_rng(seed)
    G, K = 300, 8
    pid = np.repeat(np.arange(G), K)
    sid = np.tile(np.arange(K), G)
    keep = rng.random(G * K) > 0.2  # ragged groups
    if seed == 2:  # integer rewards/lengths: many exact ties on grid points
        reward = rng.integers(-5, 5, G * K).astype(float)
        length = rng.integers(1, 20, G * K).astype(float)
    else:
        length = rng.integers(5, 400, G * K).astype(float)
        reward = rng.normal(0, 3, G * K) + 0.01 * length
    g = P.pack(pid[keep], sid[keep], reward[keep], length[keep])
    grid = P.alpha_grid(0.0, 0.999, 0.001)
    m1, n1 = P.sweep(g, grid)
    m2, n2 = P.sweep_dense(g, grid)
    assert np.array_equal(n1, n2)
    assert np.allclose(m1, m2, equal_nan=True, rtol=0, atol=1e-12)


def test_alpha_grid_inclusive():
    grid = P.alpha_grid(0.0, 0.999, 0.001)
    assert len(grid) == 1000 and grid[0] == 0.0 and grid[-1] == 0.999 and grid[500] == 0.5


@pytest.mark.parametrize("gamma,expect", [(0.0, (100, 0)), (0.25, (100, 33)), (0.5, (100, 100)), (1.0, (0, 500))])
def test_replay_counts(gamma, expect):
    assert P.replay_counts(100, 500, gamma) == expect


def test_replay_counts_limited_offline_and_cap():
    # γ = 0.5 wants 100 offline but only 40 exist → 40 offline, generated cut to 40 to keep the ratio
    assert P.replay_counts(100, 40, 0.5) == (40, 40)
    assert P.replay_counts(100, 500, 0.25, max_pairs=80) == (60, 20)
    assert P.replay_counts(100, 500, 1.0, max_pairs=80) == (0, 80)


@pytest.mark.parametrize("n_gen,n_total,n_avail,gamma,official,ours", [
    # the demo's round 1: 400 generated, 600 offline; official min(int(600·0.5), 400) = 300, int(0.5·300/0.5) = 300
    (400, 600, 600, 0.5, (300, 300), (400, 400)),
    # γ = 0.4: official n_gen = min(int(1000·0.6), 100) = 100, n_off = int(0.4·100/0.6) = int(66.7) = 66; ours rounds to 67
    (100, 1000, 1000, 0.4, (100, 66), (100, 67)),
    # few offline pairs: official n_gen = min(int(50·0.75), 100) = 37, n_off = int(0.25·37/0.75) = 12;
    # ours keeps 100 generated and wants 33 offline but 50 − 20 used = 30 are left → 30 offline, 90 generated
    (100, 50, 30, 0.25, (37, 12), (90, 30)),
    (100, 500, 500, 0.0, (100, 0), (100, 0)),  # γ = 0: every generated pair (official: no mix step)
    (100, 500, 500, 1.0, (0, 500), (0, 500)),  # γ = 1: offline only (official: division by zero)
])
def test_replay_counts_official_and_dicekit(n_gen, n_total, n_avail, gamma, official, ours):
    assert P.replay_counts_official(n_gen, n_total, n_avail, gamma) == official
    assert P.replay_counts(n_gen, n_avail, gamma) == ours


def test_replay_counts_official_never_asks_for_more_than_is_left():
    # official wants int(0.5·300/0.5) = 300 offline, only 120 are from unused prompts: cut to 120
    assert P.replay_counts_official(400, 600, 120, 0.5) == (300, 120)


def test_draw_offline_avoids_used_prompts_and_is_seeded():
    keys = [f"p{i}" for i in range(10)]
    idx = P.draw_offline(keys, {"p0", "p1", "p2"}, 5, seed=3)
    assert len(set(idx)) == 5 and not ({0, 1, 2} & set(idx.tolist()))
    assert np.array_equal(idx, P.draw_offline(keys, {"p0", "p1", "p2"}, 5, seed=3))
    with pytest.raises(ValueError):
        P.draw_offline(keys, {"p0"}, 10, seed=0)
