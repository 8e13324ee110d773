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
