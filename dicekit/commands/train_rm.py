"""`dicekit train-rm`: a scalar reward model on offline preference pairs (TRL's RewardTrainer).

The baseline of the paper's Table 5: a Bradley–Terry reward model trained on the same seed data the
DPO policy saw, initialised from a causal LM folder (typically the SFT model π_{-1} or π_0). Writes
``--out`` (safetensors + tokenizer + dicekit_rm.json + train_log.jsonl); `dicekit compare-rankers
--rm DIR` ranks pairs with it.
"""

from __future__ import annotations

from dicekit.commands.cliutil import parser


def build_parser():
    p = parser("train-rm", "Train a scalar reward model on offline preference pairs (TRL RewardTrainer).")
    p.add_argument("--model", required=True, help="causal LM to start from (local folder or hub id)")
    p.add_argument("--data", required=True, help="offline pairs: jsonl/json/parquet file, folder or hub dataset id")
    p.add_argument("--split", default="train")
    p.add_argument("--limit", type=int, help="only the first N pairs")
    p.add_argument("--out", required=True, help="output folder for the reward model")
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per device step")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-length", type=int, help="drop pairs with a side longer than this many tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.data import load_pairs
    from dicekit.errors import UserError
    from dicekit.progress import say
    from dicekit.analysis.rm import RMConfig, train_rm

    for flag, value in (("--learning-rate", args.learning_rate), ("--epochs", args.epochs),
                        ("--batch-size", args.batch_size), ("--grad-accum", args.grad_accum)):
        if value <= 0:
            raise UserError(f"{flag} must be > 0, got {value}")
    pairs = load_pairs(args.data, args.split, args.limit, keep=("prompt_ids", "chosen_ids", "rejected_ids"))
    pairs = pairs.dropna(axis=1, how="all")
    cfg = RMConfig(learning_rate=args.learning_rate, num_epochs=args.epochs, max_steps=args.max_steps,
                   per_device_batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
                   max_length=args.max_length, seed=args.seed, quiet=args.quiet)
    summary = train_rm(args.model, pairs, args.out, cfg)
    say(f"reward model: {summary['train_pairs']} pairs, {summary['train_steps']} steps, "
        f"loss {summary['train_loss']}; saved to {args.out}", args.quiet)
    return 0
