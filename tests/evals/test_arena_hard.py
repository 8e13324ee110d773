"""Arena-Hard: verdicts → battles → Bradley–Terry scores, on a small arena-hard-shaped folder."""

import doctest
import json
import re

import numpy as np
import pytest

from dicekit.evals import arena_hard, arena_hard_style, bradley_terry
from tests.evals.conftest import LocalEndpoint, longer_wins, run_cli

BASELINE = "gpt-4-0314"


def judgment(qid, model, g1, g2):
    return {"question_id": qid, "model": model, "judge": "j",
            "games": [{"user_prompt": "", "judgment": "", "score": g1}, {"user_prompt": "", "judgment": "", "score": g2}]}


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def scores(tmp_path, rows, capsys, *extra):
    rc, out, err = run_cli(["eval", "arena-hard", "--judgments", write_jsonl(tmp_path / "j.jsonl", rows),
                            "--baseline", BASELINE, "--json", *extra], capsys)
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize("module", [bradley_terry, arena_hard, arena_hard_style])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_hand_computed_score_with_strong_verdicts_and_swapped_games(tmp_path, capsys):
    """Game 1 shows the baseline as A, game 2 shows the model as A. Battles for the model:
    q1 B>A, A>B → win, win (2 battles, 2 wins); q2 A>>B, B>>A → baseline strongly both times (6, 0);
    q3 A=B, B>A → tie, loss (2, 0.5); q4 B>>A, A>>B → model strongly both times (6, 6).
    Two players: the BT MLE is the weighted win rate, 8.5 / 16 = 53.125 (56.25 if strong counted once)."""
    rows = [judgment("q1", "m", "B>A", "A>B"), judgment("q2", "m", "A>>B", "B>>A"),
            judgment("q3", "m", "A=B", "B>A"), judgment("q4", "m", "B>>A", "A>>B")]
    got = scores(tmp_path, rows, capsys)
    assert got["model"] == "m" and got["n_battles"] == 16
    assert got["score"] == pytest.approx(53.125, abs=1e-6)
    assert got["ci_low"] <= got["score"] <= got["ci_high"]
    base = [r for r in got["leaderboard"] if r["model"] == BASELINE][0]
    assert base["score"] == 50.0


def test_swapped_game_is_oriented_by_position(tmp_path, capsys):
    """"A>B" in both games: the baseline wins game 1 and the model wins game 2 → 50, not 0 or 100."""
    rows = [judgment(f"q{i}", "m", "A>B", "A>B") for i in range(5)]
    assert scores(tmp_path, rows, capsys)["score"] == pytest.approx(50.0, abs=1e-6)
    rows = [judgment(f"q{i}", "m", "B>A", "A>B") for i in range(5)]  # the model wins both games
    got = scores(tmp_path, rows, capsys)
    assert got["score"] == pytest.approx(100.0, abs=1e-6)
    assert got["ci_low"] == pytest.approx(100.0, abs=1e-6) and got["ci_high"] == pytest.approx(100.0, abs=1e-6)


def test_mirrored_and_missing_labels(tmp_path, capsys):
    """B<A means A>B; a game without a label gives no battle and is counted."""
    rows = [judgment("q1", "m", "B<A", None), judgment("q2", "m", "A<B", "B=A")]
    got = scores(tmp_path, rows, capsys)
    # q1 g1: baseline (A) wins → 0; q2 g1: model (B) wins → 1; q2 g2: tie → .5 ⇒ 1.5 / 3
    assert got["n_battles"] == 3 and got["n_unparsed_games"] == 1
    assert got["score"] == pytest.approx(50.0, abs=1e-6)


def test_several_models_share_one_fit(tmp_path, capsys):
    """Each model only meets the baseline, so each score is its own weighted win rate: m1 wins
    3 of 4 battles (75), m2 1 of 4 (25)."""
    rows = [judgment("q1", "m1", "B>A", "A>B"), judgment("q2", "m1", "B>A", "B>A"),
            judgment("q1", "m2", "A>B", "B>A"), judgment("q2", "m2", "A=B", "A=B")]
    board = {r["model"]: r for r in scores(tmp_path, rows, capsys)["leaderboard"]}
    assert board["m1"]["score"] == pytest.approx(75.0, abs=1e-6)
    assert board["m2"]["score"] == pytest.approx(25.0, abs=1e-6)


def test_bootstrap_is_seeded(tmp_path, capsys):
    rng = np.random.default_rng(1)
    labels = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
    rows = [judgment(f"q{i}", "m", labels[rng.integers(5)], labels[rng.integers(5)]) for i in range(40)]
    a = scores(tmp_path, rows, capsys, "--seed", "7")
    b = scores(tmp_path, rows, capsys, "--seed", "7")
    c = scores(tmp_path, rows, capsys, "--seed", "8", "--bootstrap-rounds", "50")
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"]) and a["score"] == c["score"]
    assert a["ci_low"] < a["score"] < a["ci_high"]


def test_v2_style_control_scores_at_the_average_style_by_hand():
    """The model is longer than the baseline (300 vs 150 tokens) on 30 questions and wins 24 of them;
    shorter (100 vs 150) on 10 and wins 2. Raw: 26 / 40 = 65. Length features (a−b)/(a+b) are 1/3
    and −1/5; two feature values and two parameters make the fit exact whatever the scaling:
    logit .8 = log 4 at f = 1/3 and logit .2 = −log 4 at f = −1/5. v2.0 centres the features, so the
    score is read at their mean, f̄ = (30·1/3 − 10·1/5)/40 = 1/5: r = −log 4 + (1/5 + 1/5)·(2 log 4)/(8/15)
    = log 2, score 100·σ(log 2) = 200/3 (the markdown columns are constant, hence 0)."""
    longer = np.arange(40) < 30
    wins = np.zeros(40)
    wins[:24], wins[30:32] = 1.0, 1.0
    battles = bradley_terry.Battles(np.ones(40, dtype=int), np.zeros(40, dtype=int), wins)
    raw = bradley_terry.bt_scores(battles, 2, baseline=0, rounds=0)
    feats = bradley_terry.style_features_v2(np.where(longer, 300.0, 100.0), np.full(40, 150.0),
                                            np.zeros((40, 3)), np.zeros((40, 3)))
    styled = bradley_terry.bt_scores(bradley_terry.Battles(battles.player_a, battles.player_b, wins, feats), 2, 0, rounds=0)
    assert raw.score[1] == pytest.approx(65.0)
    assert styled.score[1] == pytest.approx(200 / 3, abs=1e-6)
    assert styled.style_coefs[0] > 0 and np.all(styled.style_coefs[1:] == 0)
    assert feats[:, 0].mean() == pytest.approx(0.0) and feats[:, 0].std(ddof=1) == pytest.approx(1.0)


def test_v01_style_features_and_penalised_fit_by_hand():
    """v0.1 compares raw counts as (a−b)/(a+b+1): 300 vs 150 tokens → 150/451, 100 vs 150 → −50/251;
    standardised with the population sd. Its fit is scikit-learn's L2 (C = 1) logistic regression on
    both players' coefficients in log10 units, each battle twice. With one feature taking two values
    the fit is no longer exact: at the optimum the gradient of
    2·Σ logloss + ½‖(c_m, c_b, β)‖² vanishes, i.e. 2·ln10·Σ(y − p) = c_m = −c_b and 2·Σ(y − p)·f = β."""
    longer = np.arange(40) < 30
    wins = np.zeros(40)
    wins[:24], wins[30:32] = 1.0, 1.0
    tokens = np.where(longer, 300.0, 100.0)
    feats = bradley_terry.style_features_v01(tokens, np.full(40, 150.0), np.zeros((40, 3)), np.zeros((40, 3)))
    raw = np.where(longer, 150 / 451, -50 / 251)
    assert feats[:, 0] == pytest.approx((raw - raw.mean()) / raw.std())
    battles = bradley_terry.Battles(np.ones(40, dtype=int), np.zeros(40, dtype=int), wins, feats)
    r, beta = bradley_terry.ratings_v01_style(battles, 2, 0)
    c_m = r[1] / (2 * np.log(10))  # c_b = −c_m by symmetry, r = ln10·(c_m − c_b)
    p = 1 / (1 + np.exp(-(r[1] + feats @ beta)))
    assert 2 * np.log(10) * (wins - p).sum() == pytest.approx(c_m, abs=1e-8)
    assert 2 * ((wins - p) * feats[:, 0]).sum() == pytest.approx(beta[0], abs=1e-8)
    assert np.all(beta[1:] == 0)
    unpenalised = bradley_terry.ratings(battles, 2, 0)[0][1]
    assert 0 < r[1] < unpenalised  # the penalty pulls the rating towards the baseline's


def test_bad_judgments_exit_2(tmp_path, capsys):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question_id": "q1", "model": "m", "games": [{"score": "A>B"}]}])
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", path, "--json"], capsys)
    assert rc == 2 and "bad.jsonl:1" in err and "games" in err and len(err.strip().splitlines()) == 1
    # the line named is the file's line, blank lines counted
    good = judgment("q1", "m", "A>B", "B>A")
    (tmp_path / "gap.jsonl").write_text(json.dumps(good) + "\n\n" + json.dumps({"question_id": "q2"}) + "\n")
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", str(tmp_path / "gap.jsonl"), "--json"], capsys)
    assert rc == 2 and "gap.jsonl:3" in err


# --- judging through an OpenAI-compatible server, on an arena-hard-shaped folder ----------------

TEMPLATE = "Q: {question_1}\n[A]{answer_1}[/A]\n[B]{answer_2}[/B]"


@pytest.fixture
def arena_dir(tmp_path):
    """data/arena-hard-v0.1 with 4 questions and baseline answers, plus config/judge_config.yaml."""
    data = tmp_path / "arena" / "data" / "arena-hard-v0.1"
    qs = [{"question_id": f"q{i}", "category": "t", "turns": [{"content": f"question {i}?"}]} for i in range(4)]
    write_jsonl(data / "question.jsonl", qs)
    write_jsonl(data / "model_answer" / f"{BASELINE}.jsonl",
                [{"question_id": f"q{i}", "model_id": BASELINE, "choices": [{"index": 0, "turns": [{"content": "base " * 3}]}]}
                 for i in range(4)])
    cfg = {"judge_model": "judge-x", "baseline_model": BASELINE, "system_prompt": "Judge fairly.",
           "prompt_template": [TEMPLATE], "regex_pattern": r"\[\[([AB<>=]+)\]\]", "temperature": 0, "max_tokens": 64}
    (tmp_path / "arena" / "config").mkdir()
    (tmp_path / "arena" / "config" / "judge_config.yaml").write_text(json.dumps(cfg))
    answers = write_jsonl(tmp_path / "mine.jsonl",  # longer than the baseline on q0, q1; shorter on q2; equal on q3
                          [{"question_id": f"q{i}", "model_id": "mine", "choices": [{"index": 0, "turns": [{"content": t}]}]}
                           for i, t in enumerate(["long " * 9, "long " * 5, "s", "base " * 3])])
    return tmp_path / "arena", answers


class VerdictServer(LocalEndpoint):
    """A chat endpoint whose judge prefers the longer answer, strongly if twice as long."""

    def __init__(self):
        self.calls = 0
        super().__init__()

    def respond(self, body, headers):
        user = body["messages"][1]["content"]
        a = re.search(r"\[A\](.*)\[/A\]", user, re.S).group(1)
        b = re.search(r"\[B\](.*)\[/B\]", user, re.S).group(1)
        verdict = longer_wins(a, b)
        self.calls += 1
        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"Verdict: [[{verdict}]]"}}]}
        return 200, json.dumps(reply).encode(), {}


@pytest.fixture
def verdict_server():
    server = VerdictServer()
    yield server
    server.close()


def test_judge_two_games_per_question_and_resume(arena_dir, verdict_server, tmp_path, capsys):
    arena, answers = arena_dir
    argv = ["eval", "arena-hard", "--arena-hard-dir", str(arena), "--answers", answers, "--judge-base-url",
            verdict_server.url, "--out", str(tmp_path / "out"), "--json", "--bootstrap-rounds", "20"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert verdict_server.calls == 8
    rc, out2, err = run_cli(argv, capsys)
    assert rc == 0 and verdict_server.calls == 8  # the judgments file is reused: no call
    rows = [json.loads(x) for x in (tmp_path / "out" / "model_judgment" / "judge-x" / "mine.jsonl").read_text().splitlines()]
    by_q = {r["question_id"]: [g["score"] for g in r["games"]] for r in rows}
    # game 1: baseline is A; game 2: the model is A
    assert by_q == {"q0": ["B>>A", "A>>B"], "q1": ["B>A", "A>B"], "q2": ["A>>B", "B>>A"], "q3": ["A=B", "A=B"]}
    q0 = next(r for r in rows if r["question_id"] == "q0")
    assert q0["games"][0]["user_prompt"] == "Q: question 0?\n[A]" + "base " * 3 + "[/A]\n[B]" + "long " * 9 + "[/B]"
    # battles: q0 6 wins, q1 2 wins, q2 6 losses, q3 2 ties → (6 + 2 + 1) / 16
    got = json.loads(out)
    assert got["score"] == pytest.approx(100 * 9 / 16, abs=1e-6) and got["n_battles"] == 16
    assert json.loads(out2)["score"] == got["score"]
    rc, _, err = run_cli(["eval", "arena-hard", "--judgments", str(tmp_path / "out" / "model_judgment" / "judge-x"),
                          "--arena-hard-dir", str(arena), "--style-control", "--json"], capsys)
    assert rc == 2 and "mine" in err  # the model's answers are not in the arena folder
    rc, out, err = run_cli(argv + ["--style-control"], capsys)  # in this run they are: q0, q1 longer, q2 shorter
    assert rc == 0 and verdict_server.calls == 8, err
    assert json.loads(out)["leaderboard"][-1]["style_coefs"][0] > 0


def test_broken_judge_config_exits_2_naming_the_line(arena_dir, tmp_path, capsys):
    arena, answers = arena_dir
    (arena / "config" / "judge_config.yaml").write_text("judge_model: x\nbaseline_model: [unclosed\n")
    rc, _, err = run_cli(["eval", "arena-hard", "--arena-hard-dir", str(arena), "--answers", answers,
                          "--judge-base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "judge_config.yaml:" in err and "invalid YAML" in err and len(err.strip().splitlines()) == 1
