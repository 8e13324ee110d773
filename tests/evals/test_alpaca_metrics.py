"""AlpacaEval metrics from annotations, checked against the published leaderboard and alpaca_eval."""

import doctest
import json
import math

import numpy as np
import pytest

from dicekit.evals import alpaca, alpaca_data, judges, lc_glm, metrics
from tests.evals.conftest import ALPACA, ANNOTATION_FILES, load, need_alpaca_fixtures, run_cli

FILES = [p.name for p in ANNOTATION_FILES] or ["<fixtures missing>"]
RAW_KEYS = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "discrete_win_rate"]


def metrics_json(argv, capsys) -> dict:
    rc, out, err = run_cli(["eval", "alpaca", *argv, "--json"], capsys)
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize("module", [metrics, lc_glm, judges])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_head_to_head_by_hand():
    """p = [1, 2, 1.5, 1.25, 0 (legacy draw)] → p − 1 = [0, 1, .5, .25, .5]: mean .45 → 45;
    squared deviations .2025 + .3025 + .0025 + .04 + .0025 = .55, sample sd = sqrt(.55 / 4) = .37081;
    SE = .37081 / √5 = .16583 → 16.583; wins 1 (the 2), base wins 2 (1 and 1.25), draws 2;
    discrete: 1.25 → 1, so [0, 1, .5, 0, .5] → 40."""
    m = metrics.alpaca_metrics([1, 2, 1.5, 1.25, 0], ["a", "bb", "ccc", "dddd", "e"])
    assert m["win_rate"] == pytest.approx(45.0)
    assert m["standard_error"] == pytest.approx(100 * math.sqrt(0.55 / 4) / math.sqrt(5))
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"]) == (1, 2, 2, 5)
    assert m["discrete_win_rate"] == pytest.approx(40.0)
    assert m["avg_length"] == 2  # int(11 / 5)


def test_nan_preferences_are_left_out_of_the_pure_counts():
    m = metrics.head_to_head([1.0, float("nan"), 2.0])
    assert m["n_total"] == 2 and m["win_rate"] == 50.0


@pytest.mark.parametrize("name", FILES)
def test_raw_metrics_equal_leaderboard(name, leaderboard, capsys):
    got = metrics_json(["--annotations", str(ALPACA / "annotations" / name)], capsys)
    row = leaderboard.loc[got["model"]]
    for key in RAW_KEYS + ["n_total"]:
        assert abs(got[key] - row[key]) <= 1e-9, key


@pytest.mark.parametrize("name", FILES)
def test_reparse_rederives_every_stored_preference(name, capsys):
    need_alpaca_fixtures()
    path = ALPACA / "annotations" / name
    rows = load(path)
    with_raw = sum(judges.top_logprobs_of(r.get("raw_completion")) is not None for r in rows)
    if with_raw == 0:  # the FuseChat file carries no raw_completion
        rc, out, err = run_cli(["eval", "alpaca", "--annotations", str(path), "--reparse", "--json"], capsys)
        assert rc == 2 and "raw_completion" in err and len(err.strip().splitlines()) == 1
        return
    got = metrics_json(["--annotations", str(path), "--reparse"], capsys)
    assert got["n_reparsed"] == with_raw
    assert got["n_reparse_mismatch"] == 0


def test_reparse_notices_a_tampered_preference(alpaca_dir, tmp_path, capsys):
    rows = load(alpaca_dir / "annotations" / "claude-2.json")
    i = next(k for k, r in enumerate(rows) if r.get("raw_completion"))
    rows[i]["preference"] = 3 - rows[i]["preference"]  # as if the swap had not been undone
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows))
    got = metrics_json(["--annotations", str(path), "--reparse"], capsys)
    assert got["n_reparse_mismatch"] == 1


@pytest.mark.parametrize("name", FILES)
def test_lc_from_published_weights_equals_leaderboard(name, leaderboard, capsys):
    need_alpaca_fixtures()
    path = ALPACA / "annotations" / name
    legacy = ["--legacy-row-order"] if len(load(path)) < 805 else []
    got = metrics_json(["--annotations", str(path), "--glm-weights", str(ALPACA / "glm_weights_length_controlled_v1.csv"),
                        "--difficulty", str(ALPACA / "instruction_difficulty_recovered.csv"),
                        "--reference-outputs", str(ALPACA / "reference_outputs.json"), *legacy], capsys)
    assert got["lc_glm"] == "published_weights"
    assert abs(got["length_controlled_winrate"] - leaderboard.loc[got["model"], "length_controlled_winrate"]) <= 1e-6


def test_difficulty_joins_by_instruction_unless_legacy(alpaca_dir):
    """phi-2 lacks two of the 805 instructions: by text, row i gets its own instruction's
    difficulty; upstream's positional join gives row i the i-th difficulty (shifted after a gap)."""
    rows = alpaca_data.load_annotations(alpaca_dir / "annotations" / "phi-2.json")
    reference = alpaca_data.load_outputs(alpaca_dir / "reference_outputs.json", "reference outputs")
    table = alpaca_data.load_difficulty(alpaca_dir / "instruction_difficulty_recovered.csv")
    by_text = alpaca_data.difficulty_for_rows(rows, table, reference, legacy_row_order=False)
    legacy = alpaca_data.difficulty_for_rows(rows, table, reference, legacy_row_order=True)
    position = {r["instruction"]: i for i, r in enumerate(reference)}
    assert np.array_equal(by_text, table.by_position[[position[r["instruction"]] for r in rows]])
    assert np.array_equal(legacy, table.by_position[: len(rows)])
    assert not np.array_equal(by_text, legacy)


@pytest.fixture
def upstream_lc(monkeypatch, alpaca_dir):
    """alpaca_eval's get_length_controlled_winrate, kept off the network and out of site-packages."""
    pytest.importorskip("sklearn")
    glm = pytest.importorskip("alpaca_eval.metrics.glm_winrate")
    gamed = str(alpaca_dir / "df_gamed_standin.csv")

    def no_hub(**kwargs):
        assert kwargs["filename"] == "df_gamed.csv", kwargs
        return gamed

    monkeypatch.setattr(glm, "hf_hub_download", no_hub)

    def run(rows, glm_name):
        import pandas as pd

        return glm.get_length_controlled_winrate(pd.DataFrame(rows), glm_name=glm_name, save_weights_dir=None,
                                                 is_warn_extreme_changes=False)
    return run


@pytest.mark.parametrize("name", FILES)
def test_lc_fit_equals_alpaca_eval(name, upstream_lc, capsys):
    path = ALPACA / "annotations" / name
    expected = upstream_lc(load(path), "length_controlled_v1")
    got = metrics_json(["--annotations", str(path), "--gamed", str(ALPACA / "df_gamed_standin.csv"),
                        "--legacy-row-order"], capsys)
    assert got["lc_glm"] == "length_controlled_v1" and got["lc_official"] is True
    assert abs(got["length_controlled_winrate"] - expected["length_controlled_winrate"]) <= 1e-6
    assert abs(got["lc_standard_error"] - expected["lc_standard_error"]) <= 1e-6


def test_lc_fit_without_gamed_rows_is_labelled_unofficial(upstream_lc, alpaca_dir, capsys):
    path = alpaca_dir / "annotations" / "gemma-7b-it.json"
    expected = upstream_lc(load(path), "length_controlled_noreg")
    got = metrics_json(["--annotations", str(path), "--difficulty", str(alpaca_dir / "instruction_difficulty_recovered.csv"),
                        "--legacy-row-order"], capsys)
    assert got["lc_glm"] == "length_controlled_noreg" and got["lc_official"] is False
    assert abs(got["length_controlled_winrate"] - expected["length_controlled_winrate"]) <= 1e-6
    rc, out, _ = run_cli(["eval", "alpaca", "--annotations", str(path), "--legacy-row-order",
                          "--difficulty", str(alpaca_dir / "instruction_difficulty_recovered.csv")], capsys)
    assert rc == 0 and "NOT the official LC" in out


def test_lc_glm_recovers_a_known_model_by_hand():
    """Soft labels drawn from σ(−1·tanh(Δ) + 0.5·d − 0.3) on 4000 rows: the CV-chosen L1 fit
    (weak penalty at this size) recovers θ to ±0.15, and predict_lc is σ(0.5·d − 0.3)."""
    rng = np.random.default_rng(0)
    n = 4000
    sdl, d = rng.normal(size=n), rng.normal(size=n)
    true = lc_glm.GlmWeights(length=-1.0, difficulty=0.5, model=-0.3)
    p = lc_glm.sigmoid(true.length * np.tanh(sdl) + true.difficulty * d + true.model)
    wins = (rng.random(n) < p).astype(float)
    fit = lc_glm.fit_lc_glm(1.0 + wins, sdl, d)
    assert fit.length == pytest.approx(-1.0, abs=0.15)
    assert fit.difficulty == pytest.approx(0.5, abs=0.15)
    assert fit.model == pytest.approx(-0.3, abs=0.15)
    assert np.allclose(lc_glm.predict_lc(true, d), 1 / (1 + np.exp(-(0.5 * d - 0.3))))
