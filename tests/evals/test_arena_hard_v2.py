"""Arena-Hard v2.0: its layout, per-category baselines, mean scores with 5–95% intervals, style
control from answer metadata, judging through an OpenAI-compatible server — and the same synthetic
verdicts written in v0.1's layout and in v2.0's, scored by each version's rules."""

import doctest
import json
import re

import numpy as np
import pytest

from dicekit.evals import arena_hard_v2, arena_hard_v2_data
from tests.evals.conftest import LocalEndpoint, longer_wins, run_cli

O3, GEMINI, GPT4 = "o3-mini-2025-01-31", "gemini-2.0-flash-001", "gpt-4-0314"


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def game(score):
    return None if score == "no game" else {"score": score, "judgment": {"answer": ""}, "prompt": []}


def v2_row(uid, model, g1, g2, category="hard_prompt", baseline=None):
    row = {"uid": uid, "category": category, "judge": "gpt-4.1", "model": model, "games": [game(g1), game(g2)]}
    return {**row, "baseline": baseline} if baseline else row


def v01_row(qid, model, g1, g2):
    return {"question_id": qid, "model": model, "judge": "gpt-4-1106-preview",
            "games": [{"score": g1, "judgment": ""}, {"score": g2, "judgment": ""}]}


def score(tmp_path, capsys, rows, *extra, name="j.jsonl"):
    rc, out, err = run_cli(["eval", "arena-hard", "--judgments", write_jsonl(tmp_path / name, rows), "--json", *extra], capsys)
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize("module", [arena_hard_v2, arena_hard_v2_data])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# The synthetic set: game 1 shows the baseline as A, game 2 the model as A. Battles for the model:
# q1 B>A, A>B → 2 wins; q2 A>>B, B>>A → 6 losses; q3 A=B, B>A → tie + loss (0.5 of 2);
# q4 B>>A, A>>B → 6 wins; q5 B>A in game 1 and no verdict in game 2.
VERDICTS = [("q1", "B>A", "A>B"), ("q2", "A>>B", "B>>A"), ("q3", "A=B", "B>A"), ("q4", "B>>A", "A>>B"), ("q5", "B>A", None)]


def test_the_same_verdicts_in_both_layouts(tmp_path, capsys):
    """v0.1 drops only the game without a verdict: q5 adds one win → (8.5 + 1) / 17 = 55.882…; one model
    against the baseline makes the Bradley–Terry score this weighted win rate. v2.0 drops the whole
    judgment: 8.5 / 16 = 53.125, the mean battle score."""
    old = score(tmp_path, capsys, [v01_row(q, "m", g1, g2) for q, g1, g2 in VERDICTS], "--baseline", GPT4, name="v01.jsonl")
    assert old["version"] == "v0.1" and old["n_battles"] == 17 and old["n_unparsed_games"] == 1
    assert old["score"] == pytest.approx(100 * 9.5 / 17, abs=1e-6) and old["interval"] == [2.5, 97.5]
    new = score(tmp_path, capsys, [v2_row(q, "m", g1, g2) for q, g1, g2 in VERDICTS], name="v2.jsonl")
    assert new["version"] == "v2.0" and new["judges"] == ["gpt-4.1"] and new["interval"] == [5.0, 95.0]
    hard = new["categories"]["hard_prompt"]
    assert hard["baseline"] == O3
    m = hard["leaderboard"][0]
    assert m["model"] == "m" and m["n_battles"] == 16 and m["n_dropped_judgments"] == 1
    assert m["score"] == pytest.approx(53.125, abs=1e-12)
    assert m["ci_low"] <= m["score"] <= m["ci_high"]
    assert hard["leaderboard"][-1] == {"model": O3, "score": 50.0, "ci_low": 50.0, "ci_high": 50.0, "baseline": True}
    # without the half-judged question both versions give the same number
    old = score(tmp_path, capsys, [v01_row(q, "m", g1, g2) for q, g1, g2 in VERDICTS[:4]], name="v01b.jsonl")
    assert old["score"] == pytest.approx(53.125, abs=1e-6)


def test_missing_games_and_unknown_labels_drop_the_judgment(tmp_path, capsys):
    """A null game (failed judge call) or an unknown label drops the row; the rest: q1 2 wins → 100."""
    rows = [v2_row("q1", "m", "B>A", "A>B"), v2_row("q2", "m", "no game", "A>B"), v2_row("q3", "m", "AB", "A>B")]
    m = score(tmp_path, capsys, rows)["categories"]["hard_prompt"]["leaderboard"][0]
    assert m["score"] == 100.0 and m["n_battles"] == 2 and m["n_dropped_judgments"] == 2


def test_each_category_against_its_own_baseline(tmp_path, capsys):
    """hard_prompt: m wins both games of q1, q2 → 100; creative_writing: wins 1 of q3's two battles
    and loses q4's → 25. Both categories in one call (v2.0's script asserts on the second); the
    baseline comes from the rows' ``baseline`` field, else arena-hard-auto's per-category default;
    a model path is keyed by its last component, as the script does."""
    rows = [v2_row("q1", "org/m", "B>A", "A>B"), v2_row("q2", "m", "B>A", "A>B"),
            v2_row("q3", "m", "A=B", "A=B", "creative_writing"), v2_row("q4", "m", "A>B", "B>A", "creative_writing")]
    got = score(tmp_path, capsys, rows)["categories"]
    assert got["hard_prompt"]["baseline"] == O3 and got["creative_writing"]["baseline"] == GEMINI
    assert got["hard_prompt"]["leaderboard"][0]["score"] == 100.0
    assert got["creative_writing"]["leaderboard"][0]["score"] == 25.0
    assert [r["model"] for r in got["hard_prompt"]["leaderboard"]] == ["m", O3]
    only = score(tmp_path, capsys, rows, "--category", "creative_writing")["categories"]
    assert list(only) == ["creative_writing"]
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", str(tmp_path / "j.jsonl"), "--category", "math"], capsys)
    assert rc == 2 and "'math'" in err and "hard_prompt" in err and len(err.strip().splitlines()) == 1
    named = [{**r, "baseline": "other-base"} for r in rows[2:]]
    assert score(tmp_path, capsys, named)["categories"]["creative_writing"]["baseline"] == "other-base"


def test_bootstrap_resamples_each_models_battles_and_reports_5_to_95():
    """100 battles at 0.5 each way: the bootstrap mean is approximately normal with sd 5 points, so
    the 5th/95th percentiles sit near 50 ∓ 1.645·5 = 41.8 / 58.2. A model whose battles all agree
    keeps a zero-width interval whatever the other model does."""
    player = np.r_[np.ones(100, int), np.full(10, 2)]
    outcome = np.r_[np.tile([0.0, 1.0], 50), np.ones(10)]
    s, lo, hi = arena_hard_v2.mean_scores(player, outcome, 3, rounds=4000, seed=0)
    assert s[1] == 50.0 and lo[1] == pytest.approx(41.8, abs=0.8) and hi[1] == pytest.approx(58.2, abs=0.8)
    assert lo[2] == hi[2] == s[2] == 100.0
    again = arena_hard_v2.mean_scores(player, outcome, 3, rounds=4000, seed=0)
    assert np.array_equal(lo, again[1], equal_nan=True) and np.array_equal(hi, again[2], equal_nan=True)


# --- style control from the answers' metadata ---------------------------------------------------

def meta(tokens, headers=0):
    return {"token_len": tokens, "header_count": {"h1": headers, "h2": 0}, "list_count": {"ordered": 0, "unordered": 0},
            "bold_count": {"**": 0, "__": 0}}


def answer(uid, model, text, metadata=None):
    row = {"uid": uid, "ans_id": uid, "model": model, "messages": [{"role": "user", "content": "?"},
                                                                  {"role": "assistant", "content": {"answer": text}}]}
    return {**row, "metadata": metadata} if metadata is not None else row


@pytest.fixture
def styled_arena(tmp_path):
    """20 hard_prompt questions. On 15 the model's answer is 300 tokens to the baseline's 150 and it
    wins both games of 12 of them (24 of 30 battles); on 5 it is 100 tokens and it wins both games of
    one (2 of 10). The markdown counts are all 0."""
    data = tmp_path / "ah" / "data" / "arena-hard-v2.0"
    write_jsonl(data / "question.jsonl", [{"uid": f"q{i}", "category": "hard_prompt", "prompt": f"p{i}"} for i in range(20)])
    write_jsonl(data / "model_answer" / f"{O3}.jsonl", [answer(f"q{i}", O3, "b", meta(150)) for i in range(20)])
    write_jsonl(data / "model_answer" / "m.jsonl", [answer(f"q{i}", "m", "a", meta(300 if i < 15 else 100)) for i in range(20)])
    wins = set(range(12)) | {15}
    write_jsonl(data / "model_judgment" / "gpt-4.1" / "m.jsonl",
                [v2_row(f"q{i}", "m", *(("B>A", "A>B") if i in wins else ("A>B", "B>A"))) for i in range(20)])
    return tmp_path / "ah", data / "model_judgment" / "gpt-4.1"


def test_style_control_by_hand(styled_arena, capsys):
    """Raw: 26 / 40 = 65. Length features (a−b)/(a+b) are 1/3 and −1/5, centred on their mean 1/5:
    the fit is exact, log 4 at 1/3 and −log 4 at −1/5, so at 1/5 it is log 2 → 200/3
    (tests/evals/test_arena_hard.py works the same line through). ``length`` alone (an IndexError in
    v2.0's script) gives the same; ``markdown`` alone has only constant columns → the raw 65."""
    arena, judgments = styled_arena
    base = ["eval", "arena-hard", "--judgments", str(judgments), "--arena-hard-dir", str(arena), "--json"]
    for extra, expect in [(["--style-control"], 200 / 3), (["--control-features", "length"], 200 / 3),
                          (["--control-features", "markdown"], 65.0), ([], 65.0)]:
        rc, out, err = run_cli(base + extra, capsys)
        assert rc == 0, err
        got = json.loads(out)["categories"]["hard_prompt"]
        m = got["leaderboard"][0]
        assert m["score"] == pytest.approx(expect, abs=1e-6), extra
        assert m["ci_low"] <= m["ci_high"]
        if extra:
            assert got["style_counts"] == "metadata (tokens)"


# --- judging -------------------------------------------------------------------------------------

TEMPLATE = "<Q>{QUESTION}</Q><A>{ANSWER_A}</A><B>{ANSWER_B}</B>"
SETTINGS = '''SYS = "Judge the answers."
JUDGE_SETTINGS = {
    "hard_prompt": {"baseline": "%s", "system_prompt": SYS},
    "creative_writing": {"baseline": "%s", "system_prompt": SYS + " Creative."},
}
''' % (O3, GEMINI)


@pytest.fixture
def checkout(tmp_path):
    """A current arena-hard-auto checkout in miniature: 2 hard_prompt + 1 creative_writing questions,
    the two baselines' answers, config/arena-hard-v2.0.yaml and utils/judge_utils.py."""
    root = tmp_path / "arena-hard-auto"
    data = root / "data" / "arena-hard-v2.0"
    qs = [("h0", "hard_prompt"), ("h1", "hard_prompt"), ("c0", "creative_writing")]
    write_jsonl(data / "question.jsonl", [{"uid": u, "category": c, "prompt": f"question {u}?"} for u, c in qs])
    write_jsonl(data / "model_answer" / f"{O3}.jsonl", [answer(u, O3, "base " * 3) for u, _ in qs[:2]])
    write_jsonl(data / "model_answer" / f"{GEMINI}.jsonl", [answer("c0", GEMINI, "base " * 3)])
    (root / "config").mkdir()
    (root / "config" / "arena-hard-v2.0.yaml").write_text(json.dumps({
        "judge_model": "judge-x", "temperature": 0.0, "max_tokens": 64, "bench_name": "arena-hard-v2.0",
        "regex_patterns": [r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"], "prompt_template": TEMPLATE}))
    (root / "utils").mkdir()
    (root / "utils" / "judge_utils.py").write_text(SETTINGS)
    mine = write_jsonl(tmp_path / "mine.jsonl", [answer("h0", "mine", "long " * 9), answer("h1", "mine", "s"),
                                                 answer("c0", "mine", "long " * 5)])
    return root, mine


class LengthJudge(LocalEndpoint):
    """Prefers the longer answer, strongly if twice as long; says an early, then a final verdict
    (v2.0 takes the last), in the single-bracket form the second pattern catches."""

    def __init__(self):
        self.calls, self.systems = 0, []
        super().__init__()

    def respond(self, body, headers):
        user = body["messages"][1]["content"]
        a = re.search(r"<A>(.*)</A>", user, re.S).group(1)
        b = re.search(r"<B>(.*)</B>", user, re.S).group(1)
        verdict = longer_wins(a, b)
        self.calls += 1
        self.systems.append(body["messages"][0]["content"])
        text = f"At first glance [a=b]. Final verdict: [{verdict.lower()}]"
        return 200, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode(), {}


@pytest.fixture
def length_judge():
    server = LengthJudge()
    yield server
    server.close()


def test_judge_v2_per_category_and_resume(checkout, length_judge, tmp_path, capsys):
    root, mine = checkout
    argv = ["eval", "arena-hard", "--arena-hard-dir", str(root), "--answers", mine, "--judge-base-url",
            length_judge.url, "--out", str(tmp_path / "out"), "--json", "--bootstrap-rounds", "20"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert length_judge.calls == 6
    assert sorted(set(length_judge.systems)) == ["Judge the answers.", "Judge the answers. Creative."]
    rc, out2, err = run_cli(argv, capsys)
    assert rc == 0 and length_judge.calls == 6  # reused: no call
    rows = [json.loads(x) for x in (tmp_path / "out" / "model_judgment" / "judge-x" / "mine.jsonl").read_text().splitlines()]
    by = {r["uid"]: (r["category"], r["baseline"], [g["score"] for g in r["games"]]) for r in rows}
    # game 1: the baseline is A; game 2: the model is A; the last verdict of each reply, upper-cased
    assert by == {"h0": ("hard_prompt", O3, ["B>>A", "A>>B"]), "h1": ("hard_prompt", O3, ["A>>B", "B>>A"]),
                  "c0": ("creative_writing", GEMINI, ["B>A", "A>B"])}
    h0 = next(r for r in rows if r["uid"] == "h0")
    assert h0["games"][0]["prompt"][1]["content"] == "<Q>question h0?</Q><A>" + "base " * 3 + "</A><B>" + "long " * 9 + "</B>"
    got = json.loads(out)
    assert got["judges"] == ["judge-x"]
    cats = got["categories"]
    # hard_prompt: h0 6 wins, h1 6 losses → 50; creative_writing: 2 wins of 2 → 100
    assert cats["hard_prompt"]["leaderboard"][0]["score"] == 50.0
    assert cats["creative_writing"]["leaderboard"][0]["score"] == 100.0
    assert json.loads(out2)["categories"] == cats


def test_v01_style_control_reads_conv_metadata(tmp_path, capsys):
    """v0.1 answers carry ``conv_metadata``; the text is one word everywhere. The model's metadata
    says it is longer exactly where it wins, so the length coefficient is positive (from the text
    alone every length feature would be 0)."""
    data = tmp_path / "old" / "data" / "arena-hard-v0.1"
    write_jsonl(data / "question.jsonl", [{"question_id": f"q{i}", "turns": [{"content": "?"}]} for i in range(6)])

    def ans(model, tokens):
        return [{"question_id": f"q{i}", "model_id": model, "choices": [{"turns": [{"content": "x"}]}],
                 "conv_metadata": meta(t)} for i, t in enumerate(tokens)]
    write_jsonl(data / "model_answer" / f"{GPT4}.jsonl", ans(GPT4, [100] * 6))
    write_jsonl(data / "model_answer" / "m.jsonl", ans("m", [200, 200, 200, 50, 50, 200]))
    rows = [v01_row(f"q{i}", "m", *(("B>A", "A>B") if i in (0, 1, 2) else ("A>B", "B>A") if i in (3, 4) else ("A=B", "A=B")))
            for i in range(6)]
    judgments = write_jsonl(tmp_path / "j" / "m.jsonl", rows)
    rc, out, err = run_cli(["eval", "arena-hard", "--judgments", judgments, "--arena-hard-dir", str(tmp_path / "old"),
                            "--style-control", "--baseline", GPT4, "--json"], capsys)
    assert rc == 0, err
    got = json.loads(out)
    assert got["style_counts"] == "metadata (tokens)" and got["leaderboard"][-1]["style_coefs"][0] > 0


# --- bad input -------------------------------------------------------------------------------------

GOOD = {"uid": "q0", "category": "hard_prompt", "model": "m", "games": [{"score": "A>B"}, {"score": "B>A"}]}


@pytest.mark.parametrize("rows,line,needle", [
    ([GOOD, {"uid": "q1", "model": "m", "games": [None, None]}], 2, "needs uid, category and model"),
    ([GOOD, {"uid": "q1", "category": "hard_prompt", "model": "m", "games": [{"score": "A>B"}]}], 2, "games"),
    ([{"model": "m", "games": []}], 1, "needs uid"),
])
def test_bad_v2_judgments_exit_2(tmp_path, capsys, rows, line, needle):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", path, "--json"], capsys)
    assert rc == 2 and f"bad.jsonl:{line}" in err and needle in err and len(err.strip().splitlines()) == 1


def test_mixed_layouts_and_wrong_version_exit_2(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [v2_row("q0", "m", "A>B", "B>A")])
    b = write_jsonl(tmp_path / "b.jsonl", [v01_row("q0", "m", "A>B", "B>A")])
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", a, b], capsys)
    assert rc == 2 and "layout" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", b, "--version", "v2.0"], capsys)
    assert rc == 2 and "v0.1's layout" in err


def test_bad_checkout_files_exit_2(checkout, tmp_path, capsys):
    root, mine = checkout
    argv = ["eval", "arena-hard", "--arena-hard-dir", str(root), "--answers", mine, "--judge-base-url",
            "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")]
    (root / "utils" / "judge_utils.py").write_text("JUDGE_SETTINGS = make_settings()\n")
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "judge_utils.py" in err and "JUDGE_SETTINGS" in err and len(err.strip().splitlines()) == 1
    (root / "utils" / "judge_utils.py").write_text(SETTINGS)
    (root / "config" / "arena-hard-v2.0.yaml").write_text(json.dumps({"judge_model": "x", "regex_patterns": ["x"],
                                                                       "prompt_template": "{QUESTION} {ANSWER_A}"}))
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "arena-hard-v2.0.yaml" in err and "ANSWER_B" in err
    config = (root / "config" / "arena-hard-v2.0.yaml").read_text()
    (root / "config" / "arena-hard-v2.0.yaml").unlink()
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "config/arena-hard-v2.0.yaml" in err
    (root / "config" / "arena-hard-v2.0.yaml").write_text(config.replace("ANSWER_A}", "ANSWER_A} {ANSWER_B}"))
    bad = write_jsonl(tmp_path / "bad_answers.jsonl", [{"uid": "h0", "model": "mine", "messages": []}])
    rc, _, err = run_cli(argv[:5] + [bad] + argv[6:], capsys)
    assert rc == 2 and "bad_answers.jsonl:1" in err and "messages" in err
