"""`dicekit app [RUN_DIR ...] [--port N]`: the Streamlit dashboard over run folders, on 127.0.0.1.

Checks the run folders, picks a free loopback port unless ``--port`` is given, prints the URL and
replaces itself with ``streamlit run app/dashboard.py -- RUN_DIR ...`` (headless, no usage
statistics, no file watching), which serves until interrupted. Without RUN_DIR, every run folder
directly under ``./runs/`` is shown.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

from dicekit.commands.cliutil import parser
from dicekit.errors import UserError

HOST = "127.0.0.1"
DASHBOARD = Path(__file__).resolve().parents[2] / "app" / "dashboard.py"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def streamlit_command(run_dirs: list[Path], port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(DASHBOARD),
            "--server.address", HOST, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--client.toolbarMode", "minimal", "--", *map(str, run_dirs)]


def _default_runs() -> list[Path]:
    from dicekit.view.runs import rounds

    root = Path("runs")
    found = sorted(p for p in root.iterdir() if p.is_dir() and rounds(p)) if root.is_dir() else []
    if not found:
        raise UserError("no RUN_DIR given and no run folder under ./runs/; pass the run folder to show")
    return found


def main(argv: list[str]) -> int:
    p = parser("app", "The dashboard over one or more run folders, served on 127.0.0.1.")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", type=Path,
                   help="run folders to show (default: every run folder under ./runs/)")
    p.add_argument("--port", type=int, default=None, help="port to serve on (default: a free one)")
    args = p.parse_args(argv)
    from dicekit.view.runs import check_run_dir

    run_dirs = [check_run_dir(d).resolve() for d in args.run_dirs] or [d.resolve() for d in _default_runs()]
    if args.port is not None and not 1 <= args.port <= 65535:
        p.error(f"--port must be in 1..65535, got {args.port}")
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("the dashboard needs streamlit: pip install 'dicekit[app]'")
    if not DASHBOARD.is_file():
        raise UserError(f"{DASHBOARD}: the dashboard script is missing (the app/ folder ships with a source checkout)")
    port = args.port if args.port is not None else free_port()
    print(f"dashboard: http://{HOST}:{port}  ({len(run_dirs)} run folder{'s' * (len(run_dirs) != 1)}; Ctrl-C to stop)",
          flush=True)
    cmd = streamlit_command(run_dirs, port)
    os.execv(cmd[0], cmd)  # streamlit takes this process over: signals reach it directly
    return 0  # not reached
