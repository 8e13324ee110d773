"""The seeded training-prompt generator (dicekit.recipes.ifeval_prompts): determinism, disjointness
from the 541 IFEval prompts, and every instruction type checkable from the stored arguments."""

import json
import re

import pytest

N = 600


@pytest.fixture(scope="module")
def rows():
    from dicekit.recipes.ifeval_prompts import make_prompts

    return make_prompts(N, seed=0)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def test_seeded_and_extendable(rows):
    from dicekit.recipes.ifeval_prompts import make_prompts

    assert make_prompts(30, seed=0) == rows[:30]
    other = make_prompts(30, seed=1)
    assert [r["prompt"] for r in other] != [r["prompt"] for r in rows[:30]]
    assert len({r["prompt"] for r in rows}) == N and len({r["prompt_id"] for r in rows}) == N


def test_instruction_mix(rows):
    from dicekit.recipes.ifeval_prompts import EXCLUDED, REPEAT, _registry, instruction_types

    _, conflicts = _registry()
    used = {i for r in rows for i in r["instruction_id_list"]}
    assert len(used) >= 20 and used == set(instruction_types()) and not used & set(EXCLUDED)
    assert {len(r["instruction_id_list"]) for r in rows} == {1, 2, 3}
    for r in rows:
        ids = r["instruction_id_list"]
        assert len(r["kwargs"]) == len(ids)
        assert all(b not in conflicts[a] for k, a in enumerate(ids) for b in ids[k + 1:]), ids
        if REPEAT in ids:
            assert ids[-1] == REPEAT and r["prompt"].startswith(r["kwargs"][-1]["prompt_to_repeat"])
        assert r["prompt"].startswith(r["base_task"])


def test_disjoint_from_the_ifeval_prompts(rows):
    """No generated prompt is an IFEval prompt; no base task occurs inside an IFEval prompt (or the
    other way round); no run of 8 words of a base task occurs in an IFEval prompt."""
    from dicekit.evals.ifeval import load_prompts
    from dicekit.recipes.ifeval_prompts import base_tasks

    evals = [p["prompt"] for p in load_prompts()]
    assert not {r["prompt"] for r in rows} & set(evals)
    norm_evals = [_norm(e) for e in evals]
    eval_grams = {tuple(w[k:k + 8]) for e in norm_evals for w in [e.split()] for k in range(len(w) - 7)}
    tasks = base_tasks()
    assert len(tasks) >= 150 and len(set(tasks)) == len(tasks)
    for t in tasks:
        nt = _norm(t)
        assert not any(nt in e or (len(e) > 20 and e in nt) for e in norm_evals), t
        w = nt.split()
        assert not any(tuple(w[k:k + 8]) in eval_grams for k in range(len(w) - 7)), t


def test_every_instruction_type_is_checkable(rows):
    """For every type: the description rebuilt from the row's stored (JSON round-tripped) kwargs is
    the text in the prompt, and the checker scores responses against the row."""
    from dicekit.evals.ifeval import score_response
    from dicekit.recipes.ifeval_prompts import _registry, instruction_types

    registry, _ = _registry()
    seen = set()
    for r in json.loads(json.dumps(rows)):
        for iid, kw in zip(r["instruction_id_list"], r["kwargs"]):
            if iid in seen:
                continue
            seen.add(iid)
            desc = registry[iid](iid).build_description(**kw)
            assert desc in r["prompt"], (iid, desc)
            for response in ("A short answer.", r["prompt"], "<<t>>\n" + r["prompt"].lower()):
                assert 0.0 <= score_response(response, r["instruction_id_list"], r["kwargs"], r["prompt"]) <= 1.0
    assert seen == set(instruction_types())


def test_stored_kwargs_score_as_the_prompt_says():
    from dicekit.evals.ifeval import score_response
    from dicekit.recipes.ifeval_prompts import make_prompts

    found = {}
    for r in make_prompts(200, seed=0):
        if len(r["instruction_id_list"]) == 1:
            found.setdefault(r["instruction_id_list"][0], r)
    def score(iid, text):
        r = found[iid]
        return score_response(text, r["instruction_id_list"], r["kwargs"], r["prompt"])
    assert score("change_case:english_lowercase", "all lowercase here.") == 1.0
    assert score("change_case:english_lowercase", "Not lowercase.") == 0.0
    assert score("punctuation:no_comma", "no commas here") == 1.0
    assert score("punctuation:no_comma", "one, comma") == 0.0
    assert score("detectable_format:title", "<<A title>> and text") == 1.0
    assert score("detectable_format:title", "no title") == 0.0
    end = found["startend:end_checker"]["kwargs"][0]["end_phrase"]
    assert score("startend:end_checker", f"Some text. {end}") == 1.0
    assert score("startend:end_checker", f"{end} and more") == 0.0


def test_jsonl_is_a_dicekit_prompts_file(tmp_path):
    from dicekit.data import load_prompts, read_jsonl
    from dicekit.recipes.ifeval_prompts import main, make_prompts

    assert main(["--n", "12", "--seed", "3", "--out", str(tmp_path / "p.jsonl")]) == 0
    df = load_prompts(str(tmp_path / "p.jsonl"))
    expected = make_prompts(12, seed=3)
    assert list(df["prompt_id"]) == [r["prompt_id"] for r in expected]
    assert list(df["prompt"]) == [r["prompt"] for r in expected]
    assert read_jsonl(tmp_path / "p.jsonl") == expected
