"""The IFEval checker as a judge of responses to prompts with verifiable instructions.

A prompt's quality score for a response is the share of its instructions the response follows
(strict, :func:`dicekit.evals.ifeval.score_response`), read from a prompts file whose rows carry
``prompt``, ``instruction_id_list`` and ``kwargs`` (the training prompts of
:mod:`dicekit.recipes.ifeval_prompts`, or the 541 IFEval prompts). As a pairwise judge (judge spec
``ifeval:PROMPTS.jsonl``, e.g. ``diagnose_judge`` of a round) it prefers the response that follows
more instructions and calls equal shares a draw; a prompt not in the file gets ``None``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from dicekit.errors import UserError
from dicekit.evals.judges import Comparison


class InstructionChecker:
    """prompt text -> (instruction ids, kwargs); :meth:`quality` scores a response with the checker."""

    def __init__(self, rows: Sequence[dict]):
        self.by_prompt = {r["prompt"]: (list(r["instruction_id_list"]), [dict(k) for k in r["kwargs"]]) for r in rows}

    @classmethod
    def from_file(cls, path: str | Path) -> "InstructionChecker":
        from dicekit.data import read_jsonl_rows

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: prompts file not found")
        rows = []
        for line, r in read_jsonl_rows(path):
            if not {"prompt", "instruction_id_list", "kwargs"} <= set(r):
                raise UserError(f"{path}:{line}: needs prompt, instruction_id_list and kwargs")
            rows.append(r)
        return cls(rows)

    def quality(self, prompt: str, response: str) -> float:
        """Share of the prompt's instructions that ``response`` follows (strict); ValueError for a
        prompt not in the file."""
        from dicekit.evals.ifeval import score_response

        if prompt not in self.by_prompt:
            raise ValueError("prompt has no stored instructions")
        ids, kwargs = self.by_prompt[prompt]
        return score_response(response, ids, kwargs, prompt=prompt)


class CheckerJudge:
    """``PairwiseJudge``: 1 + P(output_2 better) = 2 / 1 / 1.5 by the share of instructions followed."""

    name = "ifeval-checker"

    def __init__(self, checker: InstructionChecker):
        self.checker = checker

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        from dicekit.world.judge import preference

        out: list[float | None] = []
        for c in items:
            try:
                out.append(preference(self.checker.quality(c.instruction, c.output_1),
                                      self.checker.quality(c.instruction, c.output_2)))
            except ValueError:
                out.append(None)
        return out
