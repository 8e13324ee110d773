"""`dicekit report RUN_DIR [--out DIR]`: markdown report + PNG figures of a run (dicekit.view.report).

Pure reader: needs no torch. Reads the run folder's round files, ``round_<t>/evals/*.json``,
``analysis/reward_accuracy*.json``, ``analysis/rankers.json`` and ``demo_summary.json`` when present.
"""

from __future__ import annotations

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("report", "Markdown report with figures for a run folder.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="output folder (default RUN_DIR/report)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.view.report import write_report

    path = write_report(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0
