"""The IFEval checker as a pairwise judge (`--judge ifeval:PROMPTS.jsonl`) and in the round diagnostic."""

import json

import pandas as pd
import pytest


@pytest.fixture
def prompts_file(tmp_path):
    rows = [{"prompt_id": f"p{i}", "prompt": f"Describe object {i} in lowercase letters only.",
             "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}
            for i in range(6)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_preferences(prompts_file):
    from dicekit.evals.ifeval_judge import IFEvalJudge
    from dicekit.evals.judge_factory import judge_from_spec
    from dicekit.evals.judges import Comparison

    judge = judge_from_spec(f"ifeval:{prompts_file}")
    assert isinstance(judge, IFEvalJudge) and judge.name == "ifeval-checker:prompts.jsonl"
    p = "Describe object 0 in lowercase letters only."
    # (english_lowercase also asks langdetect for English, so the texts are real sentences)
    low = "this is a plain english sentence about a small red house near the river"  # follows both
    low_comma = "this is a plain english sentence, about a small red house near the river"  # 1 of 2
    up = "This is a plain English sentence about a small red house near the river"  # 1 of 2
    up_comma = "This Is A Plain English Sentence, about a house"  # 0 of 2
    prefs = judge.judge([Comparison(p, up_comma, low), Comparison(p, low_comma, up), Comparison(p, low, low_comma),
                         Comparison("not a prompt of the file", "a", "b")])
    assert prefs == [2.0, 1.5, 1.25, None]


def test_diagnostic_with_the_checker_as_judge(prompts_file):
    """Samples: per prompt, 4 responses, half following both instructions. An implicit reward that
    favours the followers agrees with the checker on every best-vs-worst pair; its negation on none."""
    from dicekit.analysis.diagnose import diagnose_samples
    from dicekit.evals.ifeval_judge import IFEvalJudge

    rows = []
    for i in range(6):
        for s, text in enumerate(["fine lower text", "Bad, Upper", "also lower here", "Also, Bad"]):
            rows.append({"prompt_id": f"p{i}", "sample_id": s, "prompt": f"Describe object {i} in lowercase letters only.",
                         "response": text, "n_chars": 15, "n_tokens": 4, "valid": True,
                         "follows": text[0].islower()})
    samples = pd.DataFrame(rows)
    judge = IFEvalJudge(prompts_file)
    for sign, expected in ((1.0, 1.0), (-1.0, 0.0)):
        samples["reward"] = [sign * (1.0 + 0.1 * s) if f else -sign * (1.0 + 0.1 * s)
                             for s, f in zip(samples["sample_id"], samples["follows"])]
        d = diagnose_samples(samples, judge, alpha_star=0.0, max_pairs=None)
        assert d["judge"] == "ifeval-checker:prompts.jsonl"
        assert d["pairs_alpha_star"]["n_pairs"] == 6
        assert d["pairs_alpha_star"]["implicit_reward"]["agreement"] == expected


def test_a_prompts_file_without_instructions_is_refused(tmp_path):
    from dicekit.errors import UserError
    from dicekit.evals.ifeval_judge import IFEvalJudge

    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    with pytest.raises(UserError, match="plain.jsonl:1: an IFEval judge needs"):
        IFEvalJudge(path)
