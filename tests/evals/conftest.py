"""Fixtures for the evaluation tests: the shared AlpacaEval files (outside the repository)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
ALPACA = FIXTURES / "alpaca_eval"
ANNOTATION_FILES = sorted(ALPACA.glob("annotations/*.json"))


def need_alpaca_fixtures():
    if not (ALPACA / "leaderboard.csv").is_file():
        pytest.skip(f"AlpacaEval fixtures not found at {ALPACA} (the shared/ folder beside the checkout)")


@pytest.fixture
def alpaca_dir() -> Path:
    need_alpaca_fixtures()
    return ALPACA


@pytest.fixture(scope="session")
def leaderboard():
    need_alpaca_fixtures()
    import pandas as pd

    return pd.read_csv(ALPACA / "leaderboard.csv", index_col=0)


def load(path: Path):
    return json.loads(path.read_text())


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `dicekit eval ...` in-process: (exit code, stdout, stderr)."""
    from dicekit.cli import main

    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors exit this way
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


class LocalEndpoint:
    """An HTTP server on 127.0.0.1 (a free port) whose POSTs carry JSON and are answered by
    ``respond(body, headers)``: (status, payload bytes, extra headers), or None to hang up without an
    answer. ``url`` is the OpenAI-style base URL (…/v1)."""

    def __init__(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = endpoint.respond(body, self.headers)
                if reply is None:
                    return
                code, payload, headers = reply
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def respond(self, body: dict, headers) -> tuple[int, bytes, dict] | None:
        raise NotImplementedError

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def longer_wins(a: str, b: str) -> str:
    """A judge that prefers the longer answer, strongly if twice as long: the verdict label for A vs B."""
    return ("A>>B" if len(a) >= 2 * len(b) else "A>B" if len(a) > len(b) else
            "B>>A" if len(b) >= 2 * len(a) else "B>A" if len(b) > len(a) else "A=B")
