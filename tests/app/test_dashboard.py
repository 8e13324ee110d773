"""The dashboard's widgets and filters through Streamlit's AppTest, on the hand-written run folder."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.app.runfolder import make_run_folder  # noqa: E402

DASHBOARD = str(Path(__file__).resolve().parents[2] / "app" / "dashboard.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run_folder(tmp_path_factory.mktemp("run"))


def _app(monkeypatch, *run_dirs, t: int | None = None) -> AppTest:
    """The dashboard on ``run_dirs`` (as after `--` on the streamlit command line), at round ``t``."""
    monkeypatch.setattr(sys, "argv", [DASHBOARD, *map(str, run_dirs)])
    at = AppTest.from_file(DASHBOARD, default_timeout=60).run()
    if t is not None:
        at.selectbox(key=f"round_{Path(run_dirs[0]).resolve()}").set_value(t).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _frame(at: AppTest, column: str):
    """The first dataframe shown that has ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _pair_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("At α"))


def _metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def test_round_at_a_glance(monkeypatch, run):
    at = _app(monkeypatch, run)
    assert at.selectbox(key=f"round_{run.resolve()}").value == 2  # the latest round first
    at.selectbox(key=f"round_{run.resolve()}").set_value(1).run()
    m = _metrics(at)
    assert m["α* (alpha used)"] == "0.007"
    assert (m["generated pairs"], m["offline pairs"]) == ("4", "2")
    assert m["valid samples"] == "15 / 16"
    # generated pairs at α = 0.007: chosen lengths 100, 150, 90, 300; rejected 300, 90, 250, 100
    assert m["mean length chosen (chars)"] == "160.0" and m["mean length rejected (chars)"] == "185.0"
    assert m["mean reward margin"] == "3.675"  # (5 + 5 + 1.7 + 3) / 4
    ev = _frame(at, "win_rate")
    assert list(ev["win_rate"]) == [40.0, 55.0]
    assert not at.error


def test_filters_narrow_the_pairs_table(monkeypatch, run):
    at = _app(monkeypatch, run, t=1)
    assert len(_frame(at, "reward_lr_margin")) == 6
    at.multiselect(key="f_source").set_value(["offline"]).run()
    assert set(_frame(at, "reward_lr_margin")["prompt_id"]) == {"o0", "o1"}
    at.multiselect(key="f_source").set_value(["generated", "offline"]).run()
    at.text_input(key="f_text").input("__PWNED").run()
    assert list(_frame(at, "reward_lr_margin")["prompt_id"]) == ["p1"]
    at.text_input(key="f_text").input("").run()
    at.slider(key="f_len").set_value((-40.0, 60.0)).run()  # length differences −200, 60, −160, 200, 17, −31
    assert list(_frame(at, "reward_lr_margin")["prompt_id"]) == ["p1", "o0", "o1"]
    at.selectbox(key="sort_by").set_value("len_diff").run()
    assert list(_frame(at, "reward_lr_margin")["prompt_id"]) == ["o1", "o0", "p1"]
    margin = at.slider(key="f_margin")
    assert margin.min == 1.6 and margin.max >= 6.4  # margins 6.4, 4.58, 2.82, 1.6; offline pairs have none
    margin.set_value((4.0, margin.max)).run()
    assert list(_frame(at, "reward_lr_margin")["prompt_id"]) == ["p1"]
    assert at.selectbox(key="prompt").options == ["p1 — Write a haiku about rain."]


def test_pagination(monkeypatch, run, tmp_path):
    """120 pairs (the 6 of round 1, 20 times over with new prompt_ids): pages of 50, 50, 20."""
    big = tmp_path / "big"
    shutil.copytree(run, big)
    pairs = pd.read_parquet(big / "round_1" / "pairs.parquet")
    many = pd.concat([pairs.assign(prompt_id=pairs["prompt_id"] + f"-{i:02d}") for i in range(20)], ignore_index=True)
    many.to_parquet(big / "round_1" / "pairs.parquet", index=False)
    at = _app(monkeypatch, big, t=1)
    assert len(_frame(at, "reward_lr_margin")) == 50
    at.number_input(key="page").set_value(3).run()
    last = _frame(at, "reward_lr_margin")
    assert len(last) == 20 and list(last["prompt_id"][:2]) == ["o0-16", "o1-16"]  # rows 100..119
    assert any("120 of 120 pairs match · page 3 of 3" in c.value for c in at.caption)
    at.multiselect(key="f_source").set_value(["offline"]).run()  # 40 rows: one page, page clamped to it
    assert len(_frame(at, "reward_lr_margin")) == 40 and at.number_input(key="page").value == 1
    at.multiselect(key="f_source").set_value(["generated", "offline"]).run()
    at.selectbox(key="page_size").set_value(100).run()
    assert len(_frame(at, "reward_lr_margin")) == 100


def test_prompt_samples_and_alpha_slider(monkeypatch, run):
    at = _app(monkeypatch, run, t=1)
    assert at.selectbox(key="prompt").value == "p0"
    samples = _frame(at, "role")
    # reward_lr at α* = 0.007: s0 5 − 2.8 = 2.2, s1 3 − 0.7 = 2.3, s2 1 − 0.84 = 0.16, s3 −2 − 2.1 = −4.1
    assert list(samples["sample_id"]) == [1, 0, 2, 3]
    assert samples["reward_lr"].to_numpy() == pytest.approx([2.3, 2.2, 0.16, -4.1])
    assert _pair_line(at).startswith("At α = 0.0070: **chosen = sample 1**, **rejected = sample 3**")
    slider = at.slider(key=f"alpha_{run.resolve()}_1")
    assert slider.value == pytest.approx(0.007) and (slider.min, slider.max) == (0.0, 0.02)
    slider.set_value(0.0).run()
    assert _pair_line(at).startswith("At α = 0.0000: **chosen = sample 0**, **rejected = sample 3**")
    assert list(_frame(at, "role")["role"]) == ["chosen", "", "", "rejected"]
    regions = _frame(at, "alpha_from")
    assert regions[["chosen", "rejected"]].to_numpy().tolist() == [[0, 3], [1, 3]]
    assert [e.label for e in at.expander if "sample" in e.label] == [
        "#1 · sample 0 chosen", "#2 · sample 1 ", "#3 · sample 2 ", "#4 · sample 3 rejected"]


def test_prompt_across_rounds_and_invalid_sample(monkeypatch, run):
    at = _app(monkeypatch, run, t=1)
    at.selectbox(key="prompt").set_value("p3").run()
    assert list(_frame(at, "role")["role"]) == ["chosen", "", "rejected", "invalid"]
    chosen = [c.value for c in at.code if c.value.startswith("[round")]
    assert any(v.startswith("[round 1 p3 sample 0]") for v in chosen)  # round 1's chosen response
    assert any(v.startswith("[round 2 p3 sample") for v in chosen)  # round 2's, in the across-rounds view
    assert [m.value for m in at.markdown if m.value in ("**Round 1**", "**Round 2**")] == ["**Round 1**", "**Round 2**"]


def test_model_output_is_text_and_credit_is_escaped(monkeypatch, run):
    at = _app(monkeypatch, run, t=1)
    at.selectbox(key="prompt").set_value("p1").run()
    assert any(c.value.startswith("<script>window.__pwned=1</script>") for c in at.code)  # shown verbatim, as code
    html = at.get("html")
    assert len(html) == 1
    body = html[0].proto.body
    text = re.sub(r'<span title="[^"<>]*" style="[^"<>]*">|</span>|<div style="[^"<>]*">|</div>', "", body)
    assert "<" not in text and "&lt;scr" in text  # only the viewer's own tags; the model's are escaped
    assert any("Σ log-ratio = 4.000 (sample reward 4.000)" in c.value for c in at.caption)


def test_judge_marks_only_when_present(monkeypatch, run):
    at = _app(monkeypatch, run)  # round 2 has judge_quality
    table = _frame(at, "reward_lr_margin")
    assert "judge_agrees" in table
    at.checkbox(key="f_judge").check().run()
    shown = _frame(at, "reward_lr_margin")
    assert len(shown) == (table["judge_agrees"] == False).sum() > 0  # noqa: E712
    assert any("judge disagrees" in m.value for m in at.markdown)
    at.selectbox(key=f"round_{run.resolve()}").set_value(1).run()
    assert "judge_agrees" not in _frame(at, "reward_lr_margin")
    assert not [c for c in at.checkbox if c.key == "f_judge"]


def test_missing_optional_files_show_notes_not_errors(monkeypatch, run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    for name in ("alpha_sweep.csv", "train_log.jsonl", "token_credit.parquet", "pairs.parquet", "metrics.json"):
        (bare / "round_1" / name).unlink(missing_ok=True)
    shutil.rmtree(bare / "round_0")
    shutil.rmtree(bare / "round_1" / "evals")
    at = _app(monkeypatch, bare, t=1)
    notes = " ".join(i.value for i in at.info)
    for expected in ("No pairs.parquet", "No train_log.jsonl", "No evals", "No per-token credit", "No alpha_sweep.csv"):
        assert expected in notes
    assert len(_frame(at, "role")) == 4  # samples still browsable, prompts taken from samples.parquet
    assert not at.error


def test_bad_inputs_are_shown_as_errors(monkeypatch, run, tmp_path):
    at = _app(monkeypatch)
    assert "No run folder given" in at.error[0].value
    at = _app(monkeypatch, tmp_path / "nowhere")
    assert "not a folder" in at.error[0].value
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "round_2" / "pairs.parquet").write_text("not parquet")
    at = _app(monkeypatch, damaged)
    assert "pairs.parquet: cannot be read" in at.error[0].value


def test_two_runs(monkeypatch, run, tmp_path):
    other = make_run_folder(tmp_path / "other")
    shutil.rmtree(other / "round_2")
    at = _app(monkeypatch, run, other)
    assert at.selectbox(key="run").options == [Path(run).name, "other"]  # shown by folder name
    at.selectbox(key="run").set_value(str(other.resolve())).run()
    assert at.selectbox(key=f"round_{other.resolve()}").options == ["1"]
    assert _metrics(at)["α* (alpha used)"] == "0.007"


def test_alpha_sweep_histograms_follow_the_round(monkeypatch, run):
    at = _app(monkeypatch, run)
    key = f"hist_alphas_{run.resolve()}"
    assert at.multiselect(key=f"{key}_2").value == [0.0, 0.02]  # round 2: α* = 0, the grid's first value
    at.selectbox(key=f"round_{run.resolve()}").set_value(1).run()
    assert at.multiselect(key=f"{key}_1").value == [0.0, 0.007, 0.02]  # round 1: α* = 0.007
    assert len(at.get("vega_lite_chart")) >= 3  # training curve, sweep, histograms (+ the prompt's lines)
    assert not at.exception


def test_round_monitor_shows_signals_verdict_and_stabilisers(monkeypatch, run, tmp_path):
    import json

    copy = tmp_path / "monitored"
    shutil.copytree(run, copy)
    path = copy / "round_1" / "metrics.json"
    m = json.loads(path.read_text())
    m["health"] = {"heldout_accuracy": {"value": 0.55, "ci_low": 0.5, "ci_high": 0.6, "n": 200},
                   "consistency": {"value": None, "reason": "round 1 has no previous reward", "n": 0},
                   "variant_agreement": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n": 4},
                   "verdict": {"verdict": "harm", "signal": "heldout_accuracy", "value": 0.55, "threshold": 0.6}}
    m["stabilisers"] = {"gate": {"fallback": True, "reason": "heldout_accuracy 0.550 < 0.6"}, "replay_ratio": 1.0}
    path.write_text(json.dumps(m))
    at = _app(monkeypatch, copy, t=1)
    shown = _metrics(at)
    assert shown["heldout_accuracy"] == "0.550" and shown["consistency"] == "—" and shown["variant_agreement"] == "0.800"
    assert any("verdict: `harm`" in x.value for x in at.markdown)
    assert not at.error
