"""The run folder's write lock (dicekit.rundir.run_lock), tested with real processes: a second
writer is refused naming the holder, a lock left by a killed process is taken over, torchrun ranks
follow their own rank 0, and two real `run-round`s of one config cannot interleave."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dicekit import rundir
from dicekit.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
HOLD = ("import sys, time\nfrom dicekit import rundir\nwith rundir.run_lock(sys.argv[1], 'holder'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n")


def holder(run_dir: Path, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    proc = holder(tmp_path / "run")
    try:
        with pytest.raises(UserError) as err:
            with rundir.run_lock(tmp_path / "run", "second"):
                pass
        msg = str(err.value)
        assert f"in use by pid {proc.pid} on {socket.gethostname()} since 20" in msg and "(holder)" in msg
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    proc = holder(tmp_path / "run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = json.loads((tmp_path / "run" / ".lock").read_text())
    assert left["pid"] == proc.pid  # the dead holder's record is still there
    with rundir.run_lock(tmp_path / "run", "after") as info:
        assert info["pid"] == os.getpid()
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    assert f"took over the lock left by pid {proc.pid}" in capsys.readouterr().err
    assert not (tmp_path / "run" / ".lock").exists()  # released: nothing left behind


def test_the_lock_is_reentrant_within_a_process_and_released_after(tmp_path):
    with rundir.run_lock(tmp_path / "run", "outer"):
        with rundir.run_lock(tmp_path / "run", "inner"):
            assert rundir.lock_holder(tmp_path / "run")["command"] == "outer"
        assert (tmp_path / "run" / ".lock").exists()
    assert not (tmp_path / "run" / ".lock").exists()
    with rundir.run_lock(tmp_path / "run", "again"):  # and can be taken again
        pass


def test_ranks_follow_their_own_rank_0(tmp_path, monkeypatch):
    launch = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511", "TORCHELASTIC_RUN_ID": "a"}
    proc = holder(tmp_path / "run", {**launch, "RANK": "0"})
    try:
        for k, v in {**launch, "RANK": "1"}.items():
            monkeypatch.setenv(k, v)
        with rundir.run_lock(tmp_path / "run") as info:  # rank 1 of the same launch: goes ahead
            assert info["pid"] == proc.pid
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "another-launch")
        with pytest.raises(UserError, match=f"in use by pid {proc.pid}"):
            with rundir.run_lock(tmp_path / "run"):
                pass
    finally:
        proc.kill()
        proc.wait()


# The second `run-round` of the trial: imports everything first (seconds of import time during which a
# fast machine finishes the first round), then waits for a line on stdin before it runs the command.
PREWARMED = ("import sys\nimport dicekit.round.run, dicekit.commands.run_round\nfrom dicekit.cli import main\n"
             "print('ready', flush=True)\nsys.stdin.readline()\nsys.exit(main(sys.argv[1:]))\n")


def test_two_run_rounds_of_one_config_at_once(round_values, tmp_path):
    """The trial: two `run-round --config X` started together. The second stops with exit 2 naming
    the first; the first's train_log.jsonl has each step once and metrics.json its last step.
    The second is started only once the first holds the lock, and with its imports already done, so the
    first cannot finish before the second asks (which would make the trial test nothing)."""
    steps_asked = 200
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**round_values, "max_steps": steps_asked, "num_rounds": 1}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["run-round", "--config", str(cfg)]
    cmd = [sys.executable, "-m", "dicekit", *args]
    second = subprocess.Popen([sys.executable, "-c", PREWARMED, *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert second.stdout.readline().strip() == "ready"
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lock = Path(round_values["run_dir"]) / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the first run-round ended before it was seen holding the lock"
    second_out, second_err = second.communicate("go\n", timeout=300)
    assert first.poll() is None, "the first run-round finished before the second asked for the lock"
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2 and "Traceback" not in second_err, second_err[-2000:]
    lines = second_err.strip().splitlines()
    assert len(lines) == 1 and f"in use by pid {first.pid}" in lines[0], second_err
    rdir = Path(round_values["run_dir"]) / "round_1"
    log = [json.loads(x) for x in (rdir / "train_log.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in log if "loss" in x]
    assert steps == sorted(set(steps)) and len(steps) == steps_asked
    metrics = json.loads((rdir / "metrics.json").read_text())
    assert metrics["final_loss"] == [x for x in log if "loss" in x][-1]["loss"]
    # once it is done, the same command runs again and says there is nothing to do
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_readers_run_while_a_writer_holds_the_lock_and_writers_into_the_run_wait(tmp_path):
    """A report written elsewhere only reads the run: it goes ahead while a round holds the lock; a
    report into the run folder is a writer and is refused."""
    from dicekit.view.report import write_report
    from tests.app.runfolder import make_run_folder

    run = make_run_folder(tmp_path / "run")
    proc = holder(run)
    try:
        assert write_report(run, tmp_path / "elsewhere").is_file()
        with pytest.raises(UserError, match=f"in use by pid {proc.pid}"):
            write_report(run)
        assert not (run / "report").exists()
    finally:
        proc.kill()
        proc.wait()


def test_plot_length_diff_does_not_replace_the_report_figures(tmp_path, capsys):
    """`dicekit plot length-diff` writes to RUN_DIR/plots by default: report.md's figures stay the ones
    its text describes."""
    from dicekit.cli import main
    from dicekit.view.report import write_report
    from tests.app.runfolder import make_run_folder

    run = make_run_folder(tmp_path / "run")
    write_report(run)
    before = {p.name: p.read_bytes() for p in (run / "report").iterdir()}
    assert main(["plot", "length-diff", str(run), "--round", "1", "--alphas", "0,5*ALPHA*"]) == 0
    assert {p.name: p.read_bytes() for p in (run / "report").iterdir()} == before
    assert (run / "plots" / "length_diff_round1.png").is_file()


def test_credit_and_diagnose_are_writers_too(tmp_path, capsys):
    from dicekit.analysis.credit import write_token_credit
    from dicekit.cli import main
    from tests.app.runfolder import make_run_folder

    run = make_run_folder(tmp_path / "run")
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    proc = holder(run)
    try:
        with pytest.raises(UserError, match=f"in use by pid {proc.pid}"):
            write_token_credit(run, 1, top=1)
        assert main(["diagnose", str(run), "--round", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by pid {proc.pid}" in err[0]
    finally:
        proc.kill()
        proc.wait()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".lock"} == before
