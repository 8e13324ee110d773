"""The pairwise-judge interface shared by every evaluation.

A judge answers, for each comparison, a *preference* in [1, 2] for "output_2 vs output_1" in
alpaca_eval's convention: 1 = output_1 is better, 2 = output_2 is better, 1.5 = a draw, values in
between = the probability-weighted preference (preference = 1 + P(output_2 wins)). ``None`` means the
judge gave no usable answer for that item.

Implementations: the world's oracle (``dicekit.world.judge``), an OpenAI-compatible endpoint running
the weighted_alpaca_eval_gpt4_turbo protocol, and a local HF model scoring the same template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Comparison:
    instruction: str
    output_1: str  # the baseline / reference
    output_2: str  # the model under evaluation


class PairwiseJudge(Protocol):
    name: str

    def judge(self, items: Sequence[Comparison]) -> list[float | None]:
        """Preferences in [1, 2] (or None), one per item, in order."""
        ...


# --- the weighted_alpaca_eval_gpt4_turbo protocol (AlpacaEval 2's judge) -------------------------
#
# The judge sees the instruction and two outputs labelled "m" (shown first) and "M" (shown second)
# and answers with one token. From the top-5 log-probabilities of that token:
#     p_m = e^lp(m) / (e^lp(m) + e^lp(M))   (a label absent from the top 5 has probability 0;
#                                             both absent: no preference)
#     preference(shown second vs shown first) = 2 − p_m.
# Which output is shown first is decided per instruction by
#     random.Random("is_switched_outputs" + instruction + "0").choices([False, True])
# (True: the model's output is shown first), and a switched preference is mapped back by 3 − p.
# Identical outputs are a draw (1.5) without a call. The prompt template is read from the installed
# alpaca_eval package (its files only; the package is not imported).

PROTOCOL = "weighted_alpaca_eval_gpt4_turbo"
TEMPLATE_FILE = ("evaluators_configs", "alpaca_eval_clf_gpt4_turbo", "alpaca_eval_clf.txt")
LABEL_FIRST, LABEL_SECOND = "m", "M"
TOP_LOGPROBS = 5
SWITCH_SEED = 0


@dataclass(frozen=True)
class Judgement:
    """One judged comparison: preference (output_2 vs output_1, in [1, 2] or None) and its record."""

    preference: float | None
    raw_completion: dict | None = None
    price: float = 0.0  # USD
    time: float = 0.0  # seconds of the call
    error: str | None = None


def judge_template() -> str:
    """The weighted_alpaca_eval_gpt4_turbo prompt template, as shipped in the alpaca_eval package."""
    import importlib.util
    from pathlib import Path

    from dicekit.errors import UserError

    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the alpaca_eval package is not installed (pip install 'dicekit[eval]'); "
                        "its judge prompt template is needed")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*TEMPLATE_FILE)
    if not path.is_file():
        raise UserError(f"{path}: judge template missing from the installed alpaca_eval package")
    return path.read_text(encoding="utf-8")


def template_sha256(template: str) -> str:
    import hashlib

    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def is_switched(instruction: str, seed: int = SWITCH_SEED) -> bool:
    """Whether the model's output is shown first for this instruction (alpaca_eval's seeded coin)."""
    import random

    return random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True], k=1)[0]


def make_prompt(template: str, instruction: str, first: str, second: str) -> str:
    """Fill ``{instruction}``, ``{output_1}``, ``{output_2}`` in that order, first occurrence each,
    by plain replacement (never ``str.format``: the template has other braces)."""
    prompt = template
    for key, value in (("instruction", instruction), ("output_1", first), ("output_2", second)):
        prompt = prompt.replace("{" + key + "}", str(value), 1)
    return prompt


def chatml_to_messages(prompt: str) -> list[dict]:
    """``<|im_start|>role\\ncontent<|im_end|>`` blocks -> chat messages (content stripped)."""
    messages = []
    for block in prompt.strip().split("<|im_start|>")[1:]:
        role, _, rest = block.partition("\n")
        messages.append({"role": role.strip(), "content": rest.split("<|im_end|>", 1)[0].strip()})
    return messages


def comparison_messages(template: str, item: Comparison) -> tuple[list[dict], bool]:
    """(chat messages to send, switched?) for one comparison."""
    switched = is_switched(item.instruction)
    first, second = (item.output_2, item.output_1) if switched else (item.output_1, item.output_2)
    return chatml_to_messages(make_prompt(template, item.instruction, first, second)), switched


def preference_from_top_logprobs(top_logprobs: Sequence[dict]) -> float | None:
    """2 − p_m from a list of {"token", "logprob"} entries; None if neither label is there.

    >>> import math
    >>> preference_from_top_logprobs([{"token": "M", "logprob": math.log(0.75)},
    ...                               {"token": "m", "logprob": math.log(0.25)}])
    1.75
    >>> preference_from_top_logprobs([{"token": "M", "logprob": -0.1}, {"token": "The", "logprob": -3}])
    2.0
    """
    import math

    lp = {t["token"]: float(t["logprob"]) for t in top_logprobs if t.get("token") in (LABEL_FIRST, LABEL_SECOND)}
    if not lp:
        return None
    first, second = lp.get(LABEL_FIRST, -math.inf), lp.get(LABEL_SECOND, -math.inf)
    top = max(first, second)
    log_total = top + math.log(math.exp(first - top) + math.exp(second - top))
    return 2.0 - math.exp(first - log_total)


def unswitch(preference: float | None, switched: bool) -> float | None:
    """Map a preference about the shown order back to (output_1, output_2): 3 − p if switched."""
    if preference is None or not switched:
        return preference
    return 3.0 - preference


def top_logprobs_of(raw_completion: dict) -> list[dict] | None:
    """The first output token's top_logprobs in an OpenAI chat choice (None if absent)."""
    try:
        content = raw_completion["logprobs"]["content"]
        return list(content[0]["top_logprobs"])
    except (KeyError, IndexError, TypeError):
        return None


def preference_from_raw_completion(raw_completion: dict, instruction: str) -> float | None:
    """Re-derive the stored preference of one annotation from its raw_completion."""
    top = top_logprobs_of(raw_completion)
    if top is None:
        return None
    return unswitch(preference_from_top_logprobs(top), is_switched(instruction))
