"""`dicekit app`: argument checks and the streamlit command it runs (the server itself: test_browser.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dicekit.commands import app as app_cmd
from dicekit.errors import UserError
from tests.app.runfolder import make_run_folder

ROOT = Path(__file__).resolve().parents[2]


def _dicekit(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "dicekit", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; from dicekit.cli import main\n"
            "try:\n    main(['app', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "bad = [m for m in ('streamlit', 'torch', 'pandas') if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "RUN_DIR" in out.stdout and "--port" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["/no/such/run"], "/no/such/run: not a folder"),
    (["."], "no round_<t>/ folder inside"),
    ([], "no RUN_DIR given and no run folder under ./runs/"),
])
def test_bad_run_folders_exit_2_with_one_line(tmp_path, args, message):
    out = _dicekit("app", *args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr


def test_bad_port_exits_2(tmp_path):
    run = make_run_folder(tmp_path / "run")
    out = _dicekit("app", str(run), "--port", "70000")
    assert out.returncode == 2 and "--port must be in 1..65535" in out.stderr


def test_default_runs_are_the_run_folders_under_runs(tmp_path, monkeypatch):
    make_run_folder(tmp_path / "runs" / "b")
    make_run_folder(tmp_path / "runs" / "a")
    (tmp_path / "runs" / "notes").mkdir()
    monkeypatch.chdir(tmp_path)
    assert [p.name for p in app_cmd._default_runs()] == ["a", "b"]
    (tmp_path / "runs" / "a").rename(tmp_path / "elsewhere")
    (tmp_path / "runs" / "b").rename(tmp_path / "elsewhere2")
    with pytest.raises(UserError):
        app_cmd._default_runs()


def test_streamlit_command_is_loopback_headless_without_statistics(tmp_path):
    cmd = app_cmd.streamlit_command([tmp_path / "r1", tmp_path / "r2"], 8123)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "dashboard.py")]
    opts = dict(zip(cmd[5:cmd.index("--"):2], cmd[6:cmd.index("--"):2]))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8123"
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1:] == [str(tmp_path / "r1"), str(tmp_path / "r2")]


def test_free_port_is_free():
    port = app_cmd.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise if something listened there
