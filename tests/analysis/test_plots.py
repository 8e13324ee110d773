"""`dicekit plot length-diff` on a synthetic samples table whose α* is known (about a second)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from dicekit.core import pairs as P
from dicekit.cli import main as cli
from dicekit.view.plots import length_diff_by_alpha, parse_alphas

# Four prompts, two samples each: a long one (110 chars) and a short one (50 chars). The long one's
# reward is higher by dr = 0.55, 1.05, 1.55, 2.05, so it stops being chosen once α > dr / 60 =
# 0.00917, 0.0175, 0.0258, 0.0342. On the grid 0, 0.001, ...: α < 0.0092 → all four pairs long-first
# (mean +60); 0.018 ≤ α < 0.0258 → two each way (mean 0: α* = 0.018, the first such grid value);
# 2α* = 0.036 > 0.0342 → all four short-first (mean −60).
DR = [0.55, 1.05, 1.55, 2.05]
ALPHA_STAR = 0.018


def synthetic_run(root):
    rows = []
    for i, dr in enumerate(DR):
        for k, (n, reward) in enumerate(((110, dr), (50, 0.0))):
            text = ("x" * n)
            rows.append({"prompt_id": f"p{i}", "sample_id": k, "prompt": f"prompt {i}", "response": text,
                         "prompt_ids": [1, 2], "response_ids": [i, k, n], "n_tokens": 3, "n_chars": n,
                         "finish_reason": "stop", "logp_policy": reward - 5.0, "logp_ref": -5.0, "reward": reward,
                         "valid": True})
    samples = pd.DataFrame(rows)
    rdir = root / "round_1"
    rdir.mkdir(parents=True)
    samples.to_parquet(rdir / "samples.parquet", index=False)
    (rdir / "config.yaml").write_text(yaml.safe_dump({"round": 1, "policy": "pi0", "reference": "pi-1",
                                                      "length_unit": "chars", "alpha": ALPHA_STAR}))
    grid = P.alpha_grid(0.0, 0.05, 0.001)
    mean, n = P.sweep(P.pack(samples["prompt_id"], samples["sample_id"], samples["reward"], samples["n_chars"]), grid)
    pd.DataFrame({"alpha": grid, "mean_len_diff": mean, "n_pairs": n}).to_csv(rdir / "alpha_sweep.csv", index=False)
    offline = pd.DataFrame({"prompt_id": ["o0", "o1"], "prompt": ["a", "b"], "chosen": ["y" * 30, "y" * 10],
                            "rejected": ["z" * 10, "z" * 10], "source": "offline"})
    offline.to_parquet(rdir / "pairs.parquet", index=False)
    return root


def test_alpha_star_histogram_has_the_smallest_mean(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run")
    out = tmp_path / "figs"
    assert cli(["plot", "length-diff", str(run), "--round", "1", "--alphas", "0,ALPHA*,2*ALPHA*",
                "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["alpha_star"] == ALPHA_STAR
    assert res["alphas"] == pytest.approx([0.0, ALPHA_STAR, 2 * ALPHA_STAR])
    assert res["means"] == pytest.approx([60.0, 0.0, -60.0])
    assert int(np.argmin(np.abs(res["means"]))) == 1  # the α* histogram's mean is the smallest in |·|
    assert res["n_pairs"] == [4, 4, 4] and res["offline_mean"] == pytest.approx(10.0)
    for name in ("length_diff_round1.png", "alpha_sweep_round1.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_selection_matches_the_round_search(tmp_path):
    """The plotted pairs are the round's: dicekit.core.pairs' own α* search lands on 0.018 too."""
    samples = pd.read_parquet(synthetic_run(tmp_path / "run") / "round_1" / "samples.parquet")
    g = P.pack(samples["prompt_id"], samples["sample_id"], samples["reward"], samples["n_chars"])
    star, *_ = P.search_alpha(g, P.alpha_grid(0.0, 0.05, 0.001))
    assert star == ALPHA_STAR
    diffs = length_diff_by_alpha(samples, [0.0, 0.0175 + 1e-4, 0.05])
    assert [sorted(d.tolist()) for d in diffs.values()] == [[60] * 4, [-60, -60, 60, 60], [-60] * 4]


def test_selection_drops_invalid_and_identical_responses():
    """As the round (dicekit.core.pairs.pack_valid, which dicekit.round.run uses): invalid samples are left out
    and a pair of identical responses is degenerate. Hand-worked: p0's best (reward 3, 90 chars) is
    invalid, so 2 (60) vs 0 (20) → +40; p1's two samples have the same token IDs → no pair; p2: 1 (10)
    vs 0 (30) → −20. Without response_ids the response text decides what is identical."""

    rows = [("p0", 0, 0.0, 20, [1], True), ("p0", 1, 3.0, 90, [2], False), ("p0", 2, 2.0, 60, [3], True),
            ("p1", 0, 0.0, 40, [7, 7], True), ("p1", 1, 1.0, 40, [7, 7], True),
            ("p2", 0, 0.0, 30, [4], True), ("p2", 1, 1.0, 10, [5], True)]
    samples = pd.DataFrame([{"prompt_id": p, "sample_id": k, "reward": r, "n_chars": n, "n_tokens": len(ids),
                             "response_ids": ids, "response": "x" * n if p != "p1" else "same", "valid": v}
                            for p, k, r, n, ids, v in rows])
    assert sorted(length_diff_by_alpha(samples, [0.0])[0.0].tolist()) == [-20.0, 40.0]
    assert sorted(length_diff_by_alpha(samples.drop(columns="response_ids"), [0.0])[0.0].tolist()) == [-20.0, 40.0]
    valid, groups = P.pack_valid(samples, "tokens")
    assert len(valid) == 6 and groups.length[groups.mask].tolist() == [1, 1, 2, 2, 1, 1]
    assert P.sample_lengths(valid, "chars").tolist() == [20, 60, 40, 40, 30, 10]
    with pytest.raises(Exception, match="length_unit"):
        P.sample_lengths(valid, "words")


def test_parse_alphas():
    assert parse_alphas("0,ALPHA*,2*ALPHA*, 0.5*alpha*,0.003", 0.01) == pytest.approx([0, 0.01, 0.02, 0.005, 0.003])


@pytest.mark.parametrize("args,needle", [
    (["--alphas", "0,beta"], "'beta' is not a number"),
    (["--alphas", "-1"], "non-negative"),
    (["--round", "7"], "round 7 has no samples.parquet"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    run = synthetic_run(tmp_path / "run")
    argv = ["plot", "length-diff", str(run), "--round", "1", *args]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_not_a_run_folder(tmp_path, capsys):
    assert cli(["plot", "length-diff", str(tmp_path), "--round", "1"]) == 2
    assert "no round_<t>/ folder" in capsys.readouterr().err
