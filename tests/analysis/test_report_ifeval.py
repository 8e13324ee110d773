"""`dicekit report` shows IFEval evaluations found under RUN_DIR/evals/ifeval/<model>/, without
importing torch or the checker package."""

import json
import subprocess
import sys
from pathlib import Path

from tests.analysis.test_report import HEAVY, ROOT
from tests.app.runfolder import make_run_folder


def _results(follow: list[tuple[bool, bool]]) -> list[dict]:
    """One row per prompt, one instruction each: (strict, loose)."""
    return [{"key": i, "prompt": f"prompt {i}", "response": "x" * (10 * (i + 1)), "instruction_id_list": ["punctuation:no_comma"],
             "strict": [s], "loose": [lo], "follow_all_strict": s, "follow_all_loose": lo} for i, (s, lo) in enumerate(follow)]


def _write_eval(run: Path, name: str, follow) -> None:
    from dicekit.evals.ifeval import summarize

    folder = run / "evals" / "ifeval" / name
    folder.mkdir(parents=True)
    rows = _results(follow)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {"model": name, "prompts": f"{len(rows)} of 541 (first {len(rows)})", **summarize(rows),
               "checker": "lm-eval==0.4.13 (lm_eval.tasks.ifeval)",
               "generation": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "dtype": "float32"}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_report_shows_ifeval(tmp_path):
    run = make_run_folder(tmp_path / "run")
    # π_0 follows prompts 0 and 3 strictly (0, 2, 3 loosely), π_1 also prompt 1: +25 points either way
    _write_eval(run, "pi_0", [(True, True), (False, False), (False, True), (True, True)])
    _write_eval(run, "pi_1", [(True, True), (True, True), (False, True), (True, True)])
    out = tmp_path / "report"
    code = (f"import sys; from dicekit.view.report import write_report; write_report({str(run)!r}, {str(out)!r}); "
            f"print([m for m in {(*HEAVY, 'lm_eval', 'nltk')!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    md = (out / "report.md").read_text()
    assert "## IFEval" in md and "](ifeval.png)" in md and (out / "ifeval.png").read_bytes()[:4] == b"\x89PNG"
    # π_0: prompt strict 2/4 = 50.0, SE of [1,0,0,1] = sd 0.577 / 2 = 28.9; loose 3/4 = 75.0 ± 25.0
    row0 = next(line for line in md.splitlines() if line.startswith("| pi_0 |"))
    assert "| 4 of 541 (first 4) | 50.0 ± 28.9 | 50.0 ± 28.9 | 75.0 ± 25.0 | 75.0 ± 25.0 | 50.0 | 25.0 |" in row0
    assert "greedy, ≤64 tokens, float32" in row0
    diff = next(line for line in md.splitlines() if line.startswith("| pi_1 | 4 |"))
    # strict: prompt 1 newly followed (+25); loose: prompt 1 too ([T,F,T,T] → all four), also +25
    assert diff.split(" | ")[2].startswith("+25.0 [") and diff.split(" | ")[3].startswith("+25.0 [")
    assert "| punctuation | 50.0 | 75.0 |" in md  # per-category strict accuracy, π_0 then π_1
    assert "| punctuation:no_comma | 4 | 50.0 | 75.0 |" in md  # per instruction type
