"""`dicekit demo --scale ci`: the whole pipeline at a reduced size, checked against docs/run-folder.md,
and every number of its table recomputed from the files it wrote."""

import json
import math

import pandas as pd
import pytest
import yaml

from dicekit.cli import main as cli
from dicekit.world import demo_eval

SAMPLE_COLUMNS = {"prompt_id", "sample_id", "prompt", "response", "prompt_ids", "response_ids", "n_tokens", "n_chars",
                  "finish_reason", "logp_policy", "logp_ref", "reward", "valid"}
PAIR_COLUMNS = {"prompt_id", "prompt", "chosen", "rejected", "source", "chosen_sample_id", "rejected_sample_id",
                "chosen_reward_lr", "rejected_reward_lr", "alpha"}
CONFIG_KEYS = {"round", "policy", "reference", "seed", "samples_per_prompt", "beta", "length_unit", "alpha",
               "replay_ratio", "dicekit_version", "git_sha"}


@pytest.fixture(scope="module")
def demo_run(ci_world, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("DICEKIT_CACHE", str(ci_world["cache"]))
    out = tmp_path_factory.mktemp("demo") / "run"
    assert cli(["demo", "--scale", "ci", "--out", str(out), "--seed", "0", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return (a is None and b is None) or (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b


def test_run_folder_follows_the_contract(demo_run):
    runs = [demo_run, demo_run / "ablations" / "alpha0", demo_run / "ablations" / "offline_only"]
    for run in runs:
        assert (run / "run.yaml").is_file()
        for t in (1, 2):
            rdir = run / f"round_{t}"
            cfg = yaml.safe_load((rdir / "config.yaml").read_text())
            assert CONFIG_KEYS <= set(cfg) and cfg["round"] == t and cfg["samples_per_prompt"] == 4
            samples = pd.read_parquet(rdir / "samples.parquet")
            assert SAMPLE_COLUMNS <= set(samples.columns)
            assert set(samples["sample_id"]) == {0, 1, 2, 3}
            pairs = pd.read_parquet(rdir / "pairs.parquet")
            assert PAIR_COLUMNS <= set(pairs.columns) and set(pairs["source"]) <= {"generated", "offline"}
            sweep = pd.read_csv(rdir / "alpha_sweep.csv")
            assert {"alpha", "mean_len_diff", "n_pairs"} <= set(sweep.columns)
            assert (rdir / "model" / "model.safetensors").is_file() and (rdir / "model" / "tokenizer.json").is_file()
            assert (rdir / "train_log.jsonl").read_text().strip()
            assert json.loads((rdir / "metrics.json").read_text())["round"] == t
    alpha0 = yaml.safe_load((runs[1] / "round_1" / "config.yaml").read_text())
    offline_only = pd.read_parquet(runs[2] / "round_1" / "pairs.parquet")
    assert alpha0["alpha"] == 0.0 and set(offline_only["source"]) == {"offline"}
    control = pd.read_parquet(demo_run / "controls" / "oracle_pairs" / "pairs.parquet")
    assert (control.loc[control["source"] == "generated", "chosen_quality"]
            > control.loc[control["source"] == "generated", "rejected_quality"]).all()
    assert (demo_run / "controls" / "oracle_pairs" / "model" / "model.safetensors").is_file()
    assert (demo_run / "report" / "report.md").is_file()
    report = (demo_run / "report" / "report.md").read_text()
    assert "own samples" in report and "π_2" in report


def test_every_number_in_the_table_comes_from_the_files(demo_run):
    """Recompute the summary from the run folder alone (the world copies in DIR/world, the eval files,
    the round files) and compare with what the demo saved and printed."""
    saved = json.loads((demo_run / "demo_summary.json").read_text())
    runs = {"DICE": demo_run, "DICE alpha0": demo_run / "ablations" / "alpha0",
            "DICE offline_only": demo_run / "ablations" / "offline_only"}
    again = demo_eval.summarize_demo(demo_run, runs, 2)
    for title, rows in again.items():
        if isinstance(rows, str):
            assert saved[title] == rows
            continue
        assert len(saved[title]) == len(rows)
        for a, b in zip(saved[title], rows):
            assert a.keys() == b.keys()
            assert all(_same(a[k], b[k]) for k in a), (title, a, b)
    models = saved[next(iter(saved))]
    assert [(m["run"], m["model"]) for m in models][:4] == [("DICE", "π_-1"), ("DICE", "π_0"), ("DICE", "π_1"), ("DICE", "π_2")]
    assert (models[-1]["run"], models[-1]["model"]) == (demo_eval.CONTROL, "π_1")
    # one number by hand: π_1's win rate is the mean of (preference − 1) over its outputs.jsonl
    rows = [json.loads(x) for x in (demo_run / "evals" / "pi_1" / "outputs.jsonl").read_text().splitlines()]
    assert models[2]["win_rate"] == pytest.approx(100 * sum(r["preference"] - 1 for r in rows) / len(rows))
    assert models[2]["n_total"] == len(rows) == 2 * 24
    # by hand, not through summarize_demo: π_1's reward accuracy on the held-out pairs (a reward tie
    # would count as wrong; oracle ties left out against the oracle)
    rp = [json.loads(x) for x in (demo_run / "evals" / "pi_1" / "reward_pairs.jsonl").read_text().splitlines()]
    margin = [r["reward_chosen"] - r["reward_rejected"] for r in rp]
    assert models[2]["reward_acc_annotator"] == pytest.approx(sum(m > 0 for m in margin) / len(rp))
    dq = [r["quality_chosen"] - r["quality_rejected"] for r in rp]
    decided = [(m, d) for m, d in zip(margin, dq) if d != 0]
    assert models[2]["reward_acc_oracle"] == pytest.approx(sum(m * d > 0 for m, d in decided) / len(decided))
    # the own-sample row of DICE round 1, from the round's files
    from dicekit.world.oracle import quality

    own = saved[[k for k in saved if "own samples" in k][0]][0]
    assert (own["run"], own["round"]) == ("DICE", 1)
    rdir = demo_run / "round_1"
    gen = pd.read_parquet(rdir / "pairs.parquet").query("source == 'generated'")
    qc = [quality(p, c) for p, c in zip(gen["prompt"], gen["chosen"])]
    qr = [quality(p, r) for p, r in zip(gen["prompt"], gen["rejected"])]
    untied = [(a, b) for a, b in zip(qc, qr) if a != b]
    assert 0 < len(gen) <= 50  # all of them judged by the round diagnostic (diagnose_max_pairs 50 at ci scale)
    assert own["pairs right (untied)"] == pytest.approx(sum(a > b for a, b in untied) / len(untied))
    assert own["pairs tied"] == pytest.approx(1 - len(untied) / len(gen))
    assert own["len chosen − rejected"] == pytest.approx((gen["chosen"].str.len() - gen["rejected"].str.len()).mean())
    samples = pd.read_parquet(rdir / "samples.parquet").query("valid")
    agree = n = 0
    for _, g in samples.groupby("prompt_id"):
        q = [quality(p, r) for p, r in zip(g["prompt"], g["response"])]
        rw = g["reward"].tolist()
        for i in range(len(q)):
            for j in range(i + 1, len(q)):
                if q[i] != q[j]:
                    n += 1
                    agree += 1.0 if (rw[i] - rw[j]) * (q[i] - q[j]) > 0 else 0.5 if rw[i] == rw[j] else 0.0
    assert own["own-sample agreement (α=0)"] == pytest.approx(agree / n)
    # held-out "longer wins" against the oracle, equal lengths counting as wrong
    held = [json.loads(x) for x in (demo_run / "world" / "heldout_pairs.jsonl").read_text().splitlines()]
    dec = [r for r in held if r["quality_chosen"] != r["quality_rejected"]]
    longer = sum((len(r["chosen"]) - len(r["rejected"])) * (r["quality_chosen"] - r["quality_rejected"]) > 0 for r in dec)
    assert saved["World data"][0]["longer-wins vs oracle (held-out)"] == pytest.approx(longer / len(dec))


def test_second_run_reuses_everything(demo_run, capsys):
    before = {p: p.stat().st_mtime for p in demo_run.rglob("*") if p.is_file() and "report" not in p.parts
              and p.name != "demo_summary.json" and p.name != "run.yaml"}
    assert cli(["demo", "--scale", "ci", "--out", str(demo_run), "--seed", "0", "--quiet"]) == 0
    after = {p: p.stat().st_mtime for p in before}
    assert before == after
    assert "run folder" in capsys.readouterr().out


def test_bad_usage_exits_2(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    for argv in (["demo", "--rounds", "0"], ["demo", "--out", str(tmp_path / "f")], ["demo", "--scale", "huge"]):
        with pytest.raises(SystemExit) as e:
            cli(argv)
        assert e.value.code == 2
    assert capsys.readouterr().err.count("error") == 3
