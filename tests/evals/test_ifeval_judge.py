"""The IFEval checker as a judge (diagnostic judge ``ifeval:PROMPTS.jsonl``) and as the simulated
annotators' quality (the smollm2-ifeval recipe)."""

import json

import pytest

from dicekit.errors import UserError

ROW = {"prompt": "Describe a cat. Your entire response should be in English, and in all lowercase letters.",
       "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}
ROW2 = {"prompt": "Name a fruit. Answer in all lowercase letters and end with the phrase \"Is there anything else?\"",
        "instruction_id_list": ["change_case:english_lowercase", "startend:end_checker"],
        "kwargs": [{}, {"end_phrase": "Is there anything else?"}]}


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (ROW, ROW2)))
    return path


def test_quality_is_the_share_of_instructions_followed(prompts_file):
    from dicekit.evals.ifeval_judge import InstructionChecker

    c = InstructionChecker.from_file(prompts_file)
    assert c.quality(ROW["prompt"], "a small furry animal that purrs.") == 1.0
    assert c.quality(ROW["prompt"], "A small furry animal.") == 0.0
    assert c.quality(ROW2["prompt"], "an apple. Is there anything else?") == 0.5  # the capital I breaks lowercase
    assert c.quality(ROW2["prompt"], "an apple.") == 0.0
    with pytest.raises(ValueError):
        c.quality("not a stored prompt", "x")


def test_judge_spec_prefers_the_response_following_more(prompts_file):
    from dicekit.evals.judge_factory import judge_from_spec
    from dicekit.evals.judges import Comparison

    judge = judge_from_spec(f"ifeval:{prompts_file}")
    low, up = "a small furry animal that purrs.", "A Small Furry Animal That Purrs."
    got = judge.judge([Comparison(ROW["prompt"], up, low), Comparison(ROW["prompt"], low, up),
                       Comparison(ROW["prompt"], low, "a small furry animal that meows."),
                       Comparison("unknown prompt", "a", "b")])
    assert got == [2.0, 1.0, 1.5, None]


def test_bad_prompts_file_names_the_line(tmp_path):
    from dicekit.evals.judge_factory import judge_from_spec

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROW) + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: needs prompt, instruction_id_list and kwargs"):
        judge_from_spec(f"ifeval:{bad}")
    with pytest.raises(UserError, match="not found"):
        judge_from_spec(f"ifeval:{tmp_path / 'missing.jsonl'}")


def test_checker_annotators_pick_by_instructions_then_length(prompts_file):
    """Without length bias and with little noise the lowercase answer is chosen; with the world's
    verbosity bias at a short length scale, a much longer answer wins despite failing."""
    from dicekit.evals.ifeval_judge import InstructionChecker
    from dicekit.recipes.ifeval_dice import CheckerAnnotators

    c = InstructionChecker.from_file(prompts_file)
    good, bad = "a small furry animal that purrs.", "A Small Furry Animal That Sits On The Mat All Day Long And Purrs."
    fair = CheckerAnnotators(tau=0.01, verbosity=0.0, checker=c)
    assert fair.best_and_worst(ROW["prompt"], [bad, good], key=("k",)) == (1, 0)
    biased = CheckerAnnotators(tau=1.0, verbosity=1.0, length_scale=2.0, checker=c)
    assert biased.prob_first(ROW["prompt"], bad, good) > 0.99
