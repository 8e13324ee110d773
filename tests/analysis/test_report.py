"""`dicekit report` on the hand-written run folder fixture, in a fresh interpreter that must not
import torch (a pure reader); plus the report's own table helper."""

import json
import subprocess
import sys
from pathlib import Path


from dicekit.cli import main as cli
from dicekit.view.report import table
from tests.app.runfolder import make_run_folder

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "trl", "datasets", "dicekit.round.train", "dicekit.round.generate", "dicekit.round.score",
         "dicekit.round.run", "dicekit.core.objectives")


def _analysis(run: Path) -> None:
    (run / "analysis").mkdir()
    acc = {"n_pairs": 40, "alpha": 0.007,
           "overall": {k: {"accuracy": a, "ci_low": a - 0.1, "ci_high": a + 0.1}
                       for k, a in (("dpo", 0.7), ("ref_free", 0.55), ("avg", 0.5), ("lr", 0.65), ("longer", 0.6))},
           "by_length": [{"bucket": "> 50", "n": 40, "dpo": {"accuracy": 0.7, "ci_low": 0.6, "ci_high": 0.8},
                          "lr": {"accuracy": 0.65, "ci_low": None, "ci_high": None},
                          "longer": {"accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7}}]}
    (run / "analysis" / "reward_accuracy_pi0.json").write_text(json.dumps(acc))
    rankers = {"n_pairs": 40, "data": "held_out.jsonl", "oracle": "world", "policy": "toy/pi0", "reference": "toy/pi-1",
               "rankers": [{"ranker": "implicit reward (DPO log-ratio)", "accuracy": 0.7, "ci_low": 0.55, "ci_high": 0.85,
                            "n_ties": 0, "note": ""},
                           {"ranker": "LLM-as-judge (policy, additive 0-5)", "accuracy": None, "ci_low": None,
                            "ci_high": None, "n_ties": None, "note": "the digit 0 is not a single token"}]}
    (run / "analysis" / "rankers.json").write_text(json.dumps(rankers))
    metrics = json.loads((run / "round_1" / "metrics.json").read_text())
    agree = {"agreement": 0.62, "ci_low": 0.5, "ci_high": 0.74, "n_decided": 40}
    metrics["diagnostic"] = {"judge": "world-oracle", "pairs_alpha_star": {"n_pairs": 42, "implicit_reward": agree},
                             "random_pairs": {"n_pairs": 42, "longer_wins": {**agree, "agreement": 0.51}}}
    (run / "round_1" / "metrics.json").write_text(json.dumps(metrics))
    (run / "demo_summary.json").write_text(json.dumps({
        "Models": [{"model": "pi_0", "win rate": 50.0, "quality": 0.61}, {"model": "pi_1", "win rate": 54.5, "quality": 0.64}],
        "Notes": "The implicit reward agreed with the oracle on 0.58 of pi_0's own sample pairs."}))


def test_report_builds_without_torch(tmp_path):
    run = make_run_folder(tmp_path / "run")
    _analysis(run)
    out = tmp_path / "report"
    code = (f"import sys; from dicekit.view.report import write_report; write_report({str(run)!r}, {str(out)!r}); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # none of the heavy modules was imported
    md = (out / "report.md").read_text()
    # the per-round table: round 1's alpha* (0.007), 4 generated + 2 offline pairs, the last logged loss
    # (0.69 - 0.05·5 = 0.44) and reward accuracy (0.5 + 0.08·5 = 0.9), π_1's alpaca win rate 55
    row1 = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert row1.split(" | ")[1:6] == ["0.007", "0.007", "4", "2", "160"]
    assert "| 0.44 | 0.9 | 55 | 53 |" in row1
    assert "| 0 | alpaca | 40 | 38 |" in md  # π_0's evaluation
    assert "α=0: +50.0, α=0.007: -25.0, α=0.014: -90.0; offline pairs -7.0" in md
    assert "| implicit reward (DPO log-ratio) | 70.0% |" in md and "not a single token" in md
    assert "| pi_1 | 54.5 | 0.64 |" in md and "0.58 of pi_0's own sample pairs" in md
    assert "70.0% [60.0, 80.0]" in md  # reward accuracy with its interval
    assert "| 1 | world-oracle | best-vs-worst pairs at α* | 42 | 62.0% [50.0, 74.0] (n=40) |" in md
    assert "| 1 | world-oracle | random pairs of samples | 42 |  |  | 51.0% [50.0, 74.0] (n=40) |" in md
    for name in ("length_diff_round1.png", "alpha_sweep_round1.png", "length_diff_round2.png", "training.png",
                 "win_rate.png", "reward_accuracy.png"):
        assert f"]({name})" in md and (out / name).read_bytes()[:4] == b"\x89PNG"


def test_report_cli_default_folder_and_bad_input(tmp_path, capsys):
    run = make_run_folder(tmp_path / "run")
    assert cli(["report", str(run)]) == 0
    assert (run / "report" / "report.md").is_file()
    assert cli(["report", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (run / "demo_summary.json").write_text("[1, 2]")
    assert cli(["report", str(run)]) == 2
    assert "demo_summary.json" in capsys.readouterr().err


def test_table_helper():
    assert table([{"a": 1, "b": None}, {"a": 0.123456, "b": "x|y"}]) == "| a | b |\n|---|---|\n| 1 |  |\n| 0.1235 | x\\|y |"
    assert table([]) == "_(none)_"
