"""Run folders keep working when moved: paths inside them are stored relative to the run folder
(``./round_1/model``) and resolved against wherever the folder is now; `--quiet` prints nothing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dicekit import rundir
from dicekit.view import runs
from dicekit.config import RoundConfig, build
from dicekit.round.run import run_round

ROOT = Path(__file__).resolve().parent.parent


def cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "dicekit", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_run_move_next_round_move_credit_report(round_values, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.mkdir()
    # round 1 from folder a, the run folder given relative to it; --quiet: nothing on stderr at all
    (a / "cfg.yaml").write_text(yaml.safe_dump({**round_values, "run_dir": "run", "quiet": False}))
    r = cli(["run-round", "--config", "cfg.yaml", "--quiet"], cwd=a)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    conf1 = yaml.safe_load((a / "run" / "round_1" / "config.yaml").read_text())
    assert conf1["policy"] == str(Path(round_values["policy"]).resolve())  # outside the run folder: absolute

    # moved: the next round runs from the new place
    shutil.move(str(a / "run"), str(b))
    cfg = build(RoundConfig, {**round_values, "run_dir": str(b)}, "test")
    run_round(cfg)
    conf2 = yaml.safe_load((b / "round_2" / "config.yaml").read_text())
    assert conf2["policy"] == "./round_1/model" and conf2["reference"] == conf1["policy"]
    assert not any(str(b) in str(conf2[k]) for k in rundir.PATH_KEYS)  # nothing points into the folder by its place

    # moved again: readers resolve the stored paths against the folder where it is now
    shutil.move(str(b), str(c))
    assert runs.load_config(c, 2)["policy"] == str(c / "round_1" / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = cli(["credit", str(c), "--round", "2", "--top", "2", "--quiet"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(runs.load_token_credit(c, 2)) > 0
    r = cli(["report", str(c)], cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-2000:]
    report = (c / "report" / "report.md").read_text()
    assert str(tmp_path) not in report and "π_0 = `../" in report  # never this machine's absolute path
    assert not (c / ".lock").exists()
