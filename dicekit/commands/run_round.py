"""`dicekit run-round --config FILE.yaml [key=value ...] [--round T] [--quiet]`."""

from __future__ import annotations

from dicekit.commands.cliutil import parser


def main(argv: list[str]) -> int:
    p = parser("run-round", "Run (or resume) the next unfinished DICE round of the run the config names.")
    p.add_argument("--config", required=True, help="round config YAML (see README: keys of RoundConfig)")
    p.add_argument("--round", type=int, default=None, help="run this round instead of the next unfinished one")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage summaries")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys (YAML values)")
    args = p.parse_args(argv)
    from dicekit import config, rundir

    cfg = config.load(config.RoundConfig, args.config, args.overrides + (["quiet=true"] if args.quiet else []))
    if args.round is not None and args.round < 1:
        p.error("--round must be >= 1")
    if args.round is None and cfg.num_rounds is not None:
        done = rundir.finished_rounds(cfg.run_dir)
        if len(done) >= cfg.num_rounds:
            print(f"all {cfg.num_rounds} rounds of {cfg.run_dir} are finished; nothing to do")
            return 0
    from dicekit.round.run import run_round

    out = run_round(cfg, args.round)
    print(out)
    return 0
