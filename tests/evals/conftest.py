"""Fixtures for the evaluation tests: the shared AlpacaEval files (outside the repository)."""

import json
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
    except SystemExit as e:  # argparse errors and judge failures exit this way
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err
