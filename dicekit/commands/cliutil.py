"""argparse with dicekit's error convention: one line on stderr, exit status 2."""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse hook
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parser(command: str, description: str) -> Parser:
    return Parser(prog=f"dicekit {command}", description=description)


def add_prompt_length_options(group) -> None:
    """--max-prompt-tokens / --long-prompts: the max_prompt_tokens policy of the generating evals."""
    group.add_argument("--max-prompt-tokens", type=int, default=None,
                       help="longest templated prompt (default: the model's context minus --max-new-tokens)")
    group.add_argument("--long-prompts", choices=("error", "drop"), default="error",
                       help="a prompt over --max-prompt-tokens: stop naming it (default), or leave it out and say how many")
