"""`dicekit credit RUN_DIR --round T [--prompt-id ID ...|--top N]`: per-token credit of a round's samples.

Computes log π_policy − log π_ref per token (the round's reward models, exact token IDs) for every
valid sample of the chosen prompts and caches it in ``round_<t>/token_credit.parquet``, which the
dashboard shows. Samples already there are not recomputed. Default: the 20 prompts whose generated
pair has the largest reward margin.
"""

from __future__ import annotations

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("credit", "Per-token credit (log-ratio per token) of a round's samples, cached in the run folder.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--round", type=int, required=True, help="round t")
    p.add_argument("--prompt-id", nargs="+", default=None, help="these prompts' samples")
    p.add_argument("--top", type=int, default=20, help="else: the N prompts with the largest pair reward margin")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tokens-per-batch", type=int, default=None,
                   help="padded tokens per scoring batch (default: 16384 on a GPU, 1024 on a CPU)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.analysis.credit import write_token_credit
    from dicekit.errors import UserError

    if args.top is not None and args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    path, n = write_token_credit(args.run_dir, args.round, args.prompt_id, args.top, dtype=args.dtype,
                                 tokens_per_batch=args.tokens_per_batch, quiet=args.quiet)
    print(f"{n} samples added to {path}" if n else f"nothing to add: {path} already holds these samples")
    return 0
