"""The IFEval checker as a pairwise judge (``--judge ifeval:PROMPTS.jsonl``), for round diagnostics.

For a comparison (instruction, output_1, output_2) whose instruction is a prompt of the prompts file
(rows with ``prompt``, ``instruction_id_list``, ``kwargs``, as written by
dicekit.recipes.ifeval_prompts), each output is scored with
:func:`dicekit.evals.ifeval.score_response` — the fraction of the prompt's instructions it follows
(strict) — and the preference (1 + P(output_2 better), see dicekit.evals.judges) is
``1.5 + (s_2 − s_1) / 2``: 2 when output_2 follows everything and output_1 nothing, 1.5 for equal
scores (a draw). An instruction that is not in the prompts file gets ``None`` (no usable judgement),
as the world oracle does for a prompt outside its world. Deterministic and free: no cache needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dicekit.evals.judges import Comparison


def preference(score_1: float, score_2: float) -> float:
    """1 + P(output_2 better) from two fractions followed.

    >>> preference(0.5, 1.0), preference(1.0, 0.0), preference(1 / 3, 1 / 3)
    (1.75, 1.0, 1.5)
    """
    return 1.5 + (score_2 - score_1) / 2


class IFEvalJudge:
    """``PairwiseJudge`` scoring both outputs with the IFEval checker against the prompt's instructions."""

    def __init__(self, prompts_file: str | Path):
        from dicekit.data import read_jsonl_rows
        from dicekit.errors import UserError

        self.instructions: dict[str, tuple[list[str], list[dict]]] = {}
        for line, r in read_jsonl_rows(prompts_file):
            if not isinstance(r.get("prompt"), str) or not r.get("instruction_id_list") or "kwargs" not in r:
                raise UserError(f"{prompts_file}:{line}: an IFEval judge needs 'prompt' (text), "
                                "'instruction_id_list' and 'kwargs'")
            self.instructions[r["prompt"]] = (list(r["instruction_id_list"]), list(r["kwargs"]))
        self.name = f"ifeval-checker:{Path(prompts_file).name}"

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        from dicekit.evals.ifeval import score_response

        out: list[float | None] = []
        for c in items:
            found = self.instructions.get(c.instruction)
            if found is None:
                out.append(None)
                continue
            ids, kwargs = found
            out.append(preference(score_response(c.output_1, ids, kwargs, c.instruction),
                                  score_response(c.output_2, ids, kwargs, c.instruction)))
        return out
