"""`dicekit plot length-diff RUN_DIR --round T --alphas 0,ALPHA*,2*ALPHA*`: the paper's Figure 2.

For each α, the best-vs-worst pairs that α would select are recomputed from the round's
``samples.parquet`` (through dicekit.core.pairs, the round's own selection) and the histogram of
length(chosen) − length(rejected) is drawn with its mean marked, next to the offline pairs'
distribution; plus the α-sweep curve from ``alpha_sweep.csv`` with α* marked. ``ALPHA*`` stands for
the round's α*; ``k*ALPHA*`` for a multiple. PNGs go to ``--out`` (default ``RUN_DIR/report/``).
"""

from __future__ import annotations

import json

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("plot length-diff", "length(chosen)-length(rejected) histograms per alpha, and the alpha sweep.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--round", type=int, required=True, help="round t")
    p.add_argument("--alphas", default="0,ALPHA*,2*ALPHA*", help="comma-separated: numbers, ALPHA* or k*ALPHA*")
    p.add_argument("--out", help="output folder (default RUN_DIR/report)")
    p.add_argument("--json", action="store_true", help="print the means per alpha as one JSON object")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.view.plots import plot_length_diff

    result = plot_length_diff(args.run_dir, args.round, args.alphas, args.out)
    if args.json:
        print(json.dumps(result))
        return 0
    for a, m, n in zip(result["alphas"], result["means"], result["n_pairs"]):
        print(f"alpha {a:.4g}: {n} pairs, mean length difference {'-' if m is None else f'{m:+.2f}'} {result['unit']}")
    if result["offline_mean"] is not None:
        print(f"offline pairs: mean length difference {result['offline_mean']:+.2f} {result['unit']}")
    for f in result["files"]:
        print(f"wrote {f}")
    return 0
