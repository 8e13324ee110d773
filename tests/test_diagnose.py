"""The round diagnostic on hand-made samples tables, and that a judge is called only when asked."""

import json

import numpy as np
import pandas as pd
import pytest

from dicekit.analysis.diagnose import agreement, diagnose_samples, summarise


class QualityJudge:
    """A judge that reads the quality written in each response ("q=0.42 ..."); counts its calls."""

    name = "quality-judge"

    def __init__(self):
        self.calls = 0

    def judge(self, items):
        self.calls += len(items)
        q = lambda s: float(s.split()[0][2:])  # noqa: E731
        return [1.5 if q(c.output_2) == q(c.output_1) else (2.0 if q(c.output_2) > q(c.output_1) else 1.0) for c in items]


def samples_table(reward_of, n_prompts=60, k=8, seed=0):
    """Samples whose text carries their true quality; quality independent of length."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        for s in range(k):
            q = round(float(rng.random()), 4)
            length = int(rng.integers(10, 200))
            text = f"q={q} " + "x" * length
            rows.append({"prompt_id": f"p{p}", "sample_id": s, "prompt": f"prompt {p}", "response": text,
                         "response_ids": [ord(ch) for ch in text],
                         "n_chars": len(text), "n_tokens": length, "valid": True, "quality": q})
    df = pd.DataFrame(rows)
    df["reward"] = reward_of(df)
    return df


def test_agreement_by_hand():
    hits, undecided = agreement([1.0, -2.0, 3.0, 0.0], [2.0, 1.2, 1.5, 2.0])
    assert hits.tolist() == [1.0, 1.0] and undecided == 2
    hits, _ = agreement([1.0, 1.0], [1.0, None])
    assert hits.tolist() == [0.0]


def test_summary_interval_brackets_the_mean():
    hits = np.array([1.0] * 70 + [0.0] * 30)
    s = summarise(hits, 3, seed=1)
    assert s["agreement"] == 0.7 and s["n_decided"] == 100 and s["n_ties"] == 3
    # binomial standard error sqrt(.7 * .3 / 100) = 0.0458: a 95% interval of about ±0.09
    assert 0.58 < s["ci_low"] < 0.66 and 0.74 < s["ci_high"] < 0.82
    empty = summarise(np.array([]), 0, seed=0)
    assert (empty["agreement"], empty["ci_low"], empty["ci_high"]) == (None, None, None)


def test_reward_equal_to_quality_agrees_fully():
    df = samples_table(lambda d: d["quality"] * 10)
    judge = QualityJudge()
    d = diagnose_samples(df, judge, alpha_star=0.0, max_pairs=None)
    assert d["pairs_alpha_0"]["implicit_reward"]["agreement"] == 1.0
    assert d["random_pairs"]["implicit_reward"]["agreement"] == 1.0
    assert abs(d["random_pairs"]["longer_wins"]["agreement"] - 0.5) < 0.2  # quality ⟂ length


def test_reward_equal_to_length_matches_the_length_baseline():
    df = samples_table(lambda d: d["n_chars"] * 0.1, seed=1)
    d = diagnose_samples(df, QualityJudge(), alpha_star=0.0, max_pairs=None)
    for name in ("pairs_alpha_0", "random_pairs"):
        s = d[name]
        assert s["implicit_reward"]["agreement"] == pytest.approx(s["longer_wins"]["agreement"])
        assert abs(s["implicit_reward"]["agreement"] - 0.5) < 0.2


def test_judge_is_called_only_on_the_subsample():
    df = samples_table(lambda d: d["quality"], n_prompts=100)
    judge = QualityJudge()
    d = diagnose_samples(df, judge, alpha_star=0.01, max_pairs=7)
    assert all(d[s]["n_pairs"] == 7 for s in ("pairs_alpha_star", "pairs_alpha_0", "random_pairs"))
    assert 0 < judge.calls <= 21 and d["n_judge_calls"] == judge.calls


def test_round_calls_a_judge_only_when_asked(round_values, tmp_path, monkeypatch, capsys):
    """A real HTTP judge on 127.0.0.1 counts requests: a round without `diagnose` makes none;
    `dicekit diagnose` makes at most 3 × max_pairs and writes the diagnostic."""
    from dicekit.cli import main
    from dicekit.config import RoundConfig, build
    from dicekit.round.run import run_round
    from tests.evals.test_openai_judge import FakeJudgeServer

    monkeypatch.setenv("DICEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    server = FakeJudgeServer()
    try:
        rdir = run_round(build(RoundConfig, {**round_values, "max_steps": 1}, "t"))
        assert server.requests == 0
        code = main(["diagnose", str(rdir.parent), "--round", "1", "--judge", "judge-model", "--judge-base-url",
                     server.url, "--judge-api-key-env", "FAKE_JUDGE_KEY", "--max-pairs", "3", "--json"])
        assert code == 0
        assert 0 < server.requests <= 9
        d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert d["judge"] and d["pairs_alpha_star"]["n_pairs"] <= 3
        metrics = json.loads((rdir / "metrics.json").read_text())
        assert metrics["diagnostic"]["n_judge_calls"] == server.requests
        marks = pd.read_parquet(rdir / "diagnostic_pairs.parquet")
        assert set(marks["set"]) <= {"pairs_alpha_star", "pairs_alpha_0", "random_pairs"}
    finally:
        server.close()


def test_dashboard_reader_marks_pairs_the_judge_disagrees_with(tmp_path):
    from dicekit import rundir
    from dicekit.view import runs

    r = tmp_path / "run" / "round_1"
    r.mkdir(parents=True)
    pairs = pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": ["x"] * 3, "chosen": ["c"] * 3, "rejected": ["r"] * 3,
                          "source": ["generated", "generated", "offline"],
                          "chosen_sample_id": pd.array([1, 2, None], dtype="Int64"),
                          "rejected_sample_id": pd.array([0, 3, None], dtype="Int64")})
    rundir.write_parquet(r / "pairs.parquet", pairs)
    rundir.write_parquet(r / "diagnostic_pairs.parquet", pd.DataFrame({
        "set": ["pairs_alpha_star", "pairs_alpha_star", "random_pairs"], "prompt_id": ["a", "b", "a"],
        "sample_id_a": [0, 3, 5], "sample_id_b": [1, 2, 6], "preference": [2.0, 1.0, 1.5],
        "judge_agrees": [True, False, None]}))
    got = runs.load_pairs(tmp_path / "run", 1)
    assert got["judge_agrees"].tolist()[:2] == [True, False] and pd.isna(got["judge_agrees"].iloc[2])
