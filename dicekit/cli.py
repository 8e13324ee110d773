"""The `dicekit` command: parse the command name, import its module lazily, run it.

Every command lives in a module with ``main(argv: list[str]) -> int`` that builds its own argparse
parser and keeps heavy imports (torch, transformers, trl) inside functions, so ``dicekit --help``
and ``dicekit <cmd> --help`` stay fast. A :class:`~dicekit.errors.UserError` raised anywhere below
becomes one line on stderr and exit status 2; :class:`~dicekit.errors.JudgeCallsFailed` (some judge
calls failed, the rest kept) one line and exit status 1.
"""

from __future__ import annotations

import importlib
import sys

from dicekit.errors import JudgeCallsFailed, UserError

# command words -> (module with main(argv), one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("dicekit.commands.demo", "the embedded default: task world, tiny model, 2 DICE rounds, report"),
    ("run-round",): ("dicekit.commands.run_round", "run (or resume) the next DICE round of a run"),
    ("eval", "alpaca"): ("dicekit.commands.eval_alpaca", "AlpacaEval 2: raw and length-controlled win rate"),
    ("eval", "arena-hard"): ("dicekit.commands.eval_arena_hard", "Arena-Hard v0.1 / v2.0: score vs the baseline(s)"),
    ("eval", "ifeval"): ("dicekit.commands.eval_ifeval", "IFEval: verifiable instruction following, strict/loose, prompt/instruction level"),
    ("eval", "reward-accuracy"): ("dicekit.commands.eval_reward_accuracy", "implicit-reward accuracy against preference labels"),
    ("train-rm",): ("dicekit.commands.train_rm", "train a scalar reward model on offline pairs (TRL RewardTrainer)"),
    ("compare-rankers",): ("dicekit.commands.compare_rankers", "implicit reward vs reward model vs LLM-as-judge (paper Table 5)"),
    ("credit",): ("dicekit.commands.credit", "per-token credit (log-ratio per token) of a round's samples"),
    ("diagnose",): ("dicekit.commands.diagnose", "does the implicit reward agree with a judge on a round's own samples?"),
    ("report",): ("dicekit.commands.report", "markdown report with figures for a run folder"),
    ("plot", "length-diff"): ("dicekit.commands.plot_length_diff", "length(chosen)-length(rejected) histograms per alpha"),
    ("check-recipe",): ("dicekit.commands.check_recipe", "validate a recipe offline: keys, model ids, per-GPU memory and time"),
    ("app",): ("dicekit.commands.app", "the Streamlit dashboard over run folders"),
}


def _usage() -> str:
    lines = ["usage: dicekit <command> [options]", "", "commands:"]
    for words, (_, help_) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<22} {help_}")
    lines += ["", "`dicekit <command> --help` shows a command's options."]
    return "\n".join(lines)


def _resolve(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    for n in (2, 1):
        words = tuple(argv[:n])
        if words in COMMANDS:
            return words, argv[n:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from dicekit import __version__

        print(__version__)
        return 0
    found = _resolve(argv)
    if found is None:
        group = [w for w in COMMANDS if w[0] == argv[0] and len(w) > 1]
        if group and (len(argv) == 1 or argv[1] in ("-h", "--help")):
            print(f"usage: dicekit {argv[0]} <{'|'.join(w[1] for w in group)}> [options]")
            return 0 if len(argv) > 1 else 2
        print(f"dicekit: unknown command {' '.join(argv[:2])!r} (see `dicekit --help`)", file=sys.stderr)
        return 2
    words, rest = found
    module = importlib.import_module(COMMANDS[words][0])
    try:
        return int(module.main(rest) or 0)
    except UserError as err:
        print(f"dicekit {' '.join(words)}: error: {err}", file=sys.stderr)
        return 2
    except JudgeCallsFailed as err:  # the rest is kept: the same command again retries only these
        print(f"dicekit {' '.join(words)}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
