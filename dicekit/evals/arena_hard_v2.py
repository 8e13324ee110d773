"""Arena-Hard v2.0: verdict parsing, per-category scores against per-category baselines, judging (its
files, read and checked: ``dicekit.evals.arena_hard_v2_data``).

Reproduces arena-hard-auto as of commit 196f6b8 (2025-06-20; v2.0 released 2025-04-24): ``show_result.py``,
``gen_judgment.py`` and ``utils/judge_utils.py``. Layout (``data/arena-hard-v2.0/``; a current checkout
keeps ``data/arena-hard-v0.1/`` in the same layout):

* ``question.jsonl``: ``uid``, ``category`` (``hard_prompt`` 500, ``creative_writing`` 250), ``prompt``;
* ``model_answer/<model>.jsonl``: ``uid``, ``model``, ``messages`` (the last one's ``content.answer`` is
  the answer), ``metadata`` (``token_len`` and header / list / bold counts, for style control);
* ``model_judgment/<judge>/<model>.jsonl``: ``uid``, ``category``, ``model``, ``baseline``, ``judge`` and
  two ``games`` (game 1 shows the baseline as A, game 2 the model), each ``{"score", "judgment", "prompt"}``
  or null when the judge call failed.

Each category has its own baseline and judge system prompt (``JUDGE_SETTINGS`` in the checkout's
``utils/judge_utils.py``, read here as data, never imported): o3-mini-2025-01-31 for hard_prompt (and
coding, math), gemini-2.0-flash-001 for creative_writing. Scores, as ``show_result.py``:

* verdict: for each pattern of the config's ``regex_patterns`` in turn, the LAST non-empty match in
  the upper-cased judgment (:func:`parse_verdict`);
* a judgment row whose games are not both present with a verdict is dropped whole (both games);
* battles: [[A>>B]]-style strong verdicts count three, ties 0.5 (mirrored spellings B<<A, ... read as
  what they mean); per category, score = the model's mean battle score against that category's
  baseline (no Bradley–Terry fit), interval = 5th and 95th percentile of 100 bootstrap means, each
  round resampling every model's battles with replacement within that model;
* style control (``-f length``, ``-f markdown`` or both): :func:`dicekit.evals.bradley_terry.style_features_v2`
  from the answers' ``metadata`` and a Bradley–Terry fit with the baseline at 50, interval 5–95.

Deliberate deviations (each where the official script is random, crashes or is wrong):

* the score is the full-data value (mean, or style-controlled fit), not the mean (or, with style
  control, the median) of the 100 bootstrap values the script prints; the bootstrap is seeded;
* several categories in one call are each scored from all judgments (the script filters its battle
  table in place, so a second ``-c`` category fails its assertion);
* ``-f length`` / ``-f markdown`` alone keep the model columns and select the length / markdown
  features (the script slices the wrong columns; ``-f length`` ends in an IndexError);
* a verdict label outside the ten known spellings drops its row like a missing one (a KeyError
  there); a judgment of the baseline against itself is skipped (the script would list the baseline
  twice); answers without ``metadata`` are all counted from their text (words) for style control,
  where the script stops with a KeyError.

dicekit ships none of the benchmark's text: questions, answers, judge prompts and configuration
are read from the user's checkout or files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicekit.errors import UserError
from dicekit import rundir
from dicekit.evals.arena_hard import ArenaDir, BattleTable, canonical, game_outcomes
from dicekit.evals.arena_hard_run import answers_for_style, generate_model_answers, judge_key, judging_paths, run_judge_jobs
from dicekit.evals.arena_hard_style import style_pairs
from dicekit.evals.arena_hard_v2_data import load_answers, load_judgments, load_questions, read_config, read_judge_settings
from dicekit.evals.bradley_terry import Battles, bt_scores, style_features_v2
from dicekit.evals.generation import GenerationSettings

CI = (5.0, 95.0)
DEFAULT_BASELINES = {"hard_prompt": "o3-mini-2025-01-31", "coding": "o3-mini-2025-01-31",
                     "math": "o3-mini-2025-01-31", "creative_writing": "gemini-2.0-flash-001",
                     "arena-hard-v0.1": "gpt-4-0314"}
CONTROL_COLUMNS = {"length": [0], "markdown": [1, 2, 3]}


# --- verdicts and battles --------------------------------------------------------------------------

def parse_verdict(judgment: str, patterns: list[str]) -> str | None:
    r"""v2.0's ``get_score``: the first pattern with a non-empty match in the upper-cased judgment
    gives its LAST match (v0.1 required exactly one distinct label).

    >>> parse_verdict("a>b at first... final: [[B>>A]]", [r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"])
    'B>>A'
    >>> parse_verdict("[B>A]", [r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]"]), parse_verdict("none", [r"\[\[(.+)\]\]"])
    ('B>A', None)
    """
    for pattern in patterns:
        matches = [m for m in re.findall(pattern, judgment.upper()) if m != ""]
        if matches:
            return matches[-1].strip("\n")
    return None


def row_outcomes(row: dict) -> list[float] | None:
    """Battle outcomes for the model from one v2.0 judgment row: game 2 (model = A) then game 1
    (model = B), as ``show_result.load_judgments``; None when the row is dropped (a game or its
    verdict missing, or a label outside the ten spellings).

    >>> row_outcomes({"games": [{"score": "A>>B"}, {"score": "A=B"}]})  # game 1: the baseline (A) wins clearly
    [0.5, 0.0, 0.0, 0.0]
    >>> row_outcomes({"games": [{"score": "B>A"}, None]}), row_outcomes({"games": [{"score": "A>B"}, {"score": "AB"}]})
    (None, None)
    """
    g1, g2 = row["games"]
    if g1 is None or g2 is None or canonical(g1.get("score")) is None or canonical(g2.get("score")) is None:
        return None
    return game_outcomes(g2["score"], model_is_a=True) + game_outcomes(g1["score"], model_is_a=False)


def model_name(name: str) -> str:
    """show_result.py keys models by the last path component of their name."""
    return str(name).split("/")[-1]


@dataclass(frozen=True)
class CategoryTable:
    category: str
    table: BattleTable  # players[0] = the category's baseline; n_unparsed_games unused (0)
    n_dropped: dict[str, int]  # judgment rows dropped per model (missing or unknown verdict)


def category_battles(rows: list[dict], category: str, baseline: str) -> CategoryTable:
    """Battles of every model against ``baseline`` from the rows of ``category``."""
    players, a, outcome, qids = [baseline], [], [], []
    dropped: dict[str, int] = {}
    for row in rows:
        if str(row["category"]) != category:
            continue
        model = model_name(row["model"])
        if row.get("baseline") not in (None, baseline):
            raise UserError(f"{row['where']}: field 'baseline': {row['baseline']!r}, but category {category!r} "
                            f"is scored against {baseline!r}")
        if model == baseline:
            continue
        if model not in players:
            players.append(model)
            dropped[model] = 0
        got = row_outcomes(row)
        if got is None:
            dropped[model] += 1
            continue
        a += [players.index(model)] * len(got)
        outcome += got
        qids += [str(row["uid"])] * len(got)
    if len(players) == 1:
        raise UserError(f"category {category!r}: no judgments of a model other than the baseline {baseline!r}")
    battles = Battles(np.array(a, dtype=int), np.zeros(len(outcome), dtype=int), np.array(outcome, dtype=float))
    return CategoryTable(category, BattleTable(players, battles, qids, {p: 0 for p in players[1:]}), dropped)


def category_baseline(category: str, rows: list[dict], settings: dict[str, dict] | None) -> str:
    """The baseline a category is scored against: the checkout's ``JUDGE_SETTINGS``, else the rows'
    own ``baseline`` field, else arena-hard-auto's defaults."""
    if settings and category in settings:
        return settings[category]["baseline"]
    named = {str(r["baseline"]) for r in rows if r["category"] == category and r.get("baseline")}
    if len(named) == 1:
        return named.pop()
    if len(named) > 1:
        raise UserError(f"category {category!r}: judgments against several baselines ({', '.join(sorted(named))})")
    if category in DEFAULT_BASELINES:
        return DEFAULT_BASELINES[category]
    raise UserError(f"category {category!r}: no baseline known (pass --arena-hard-dir or --baseline)")


# --- scores ----------------------------------------------------------------------------------------

def mean_scores(player: np.ndarray, outcome: np.ndarray, n_players: int, rounds: int = 100, seed: int = 0,
                ci: tuple[float, float] = CI) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, ci_low, ci_high) in percent per player index ≥ 1: the mean battle outcome, and
    percentiles of bootstrap means, each model's battles resampled within that model.

    >>> s, lo, hi = mean_scores(np.array([1, 1, 1, 1]), np.array([1.0, 1.0, 0.5, 0.0]), 2, rounds=50)
    >>> float(s[1]), bool(lo[1] <= s[1] <= hi[1])
    (62.5, True)
    """
    rng = np.random.default_rng(seed)
    score, low, high = (np.full(n_players, np.nan) for _ in range(3))
    for p in range(1, n_players):
        x = outcome[player == p]
        if len(x) == 0:
            continue
        score[p] = 100.0 * x.mean()
        if rounds:
            means = 100.0 * x[rng.integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)
            low[p], high[p] = np.percentile(means, ci[0]), np.percentile(means, ci[1])
    return score, low, high


def with_style(ct: CategoryTable, answers: dict[str, dict[str, dict]], control: tuple[str, ...]) -> tuple[CategoryTable, str]:
    """v2.0's style features (model minus baseline; ``control``: "length" and/or "markdown")."""
    t = ct.table
    models = [t.players[p] for p in t.battles.player_a]
    la, lb, ma, mb, source = style_pairs(models, [t.players[0]] * len(models), t.question_ids, answers)
    cols = sorted(c for name in control for c in CONTROL_COLUMNS[name])
    feats = style_features_v2(la, lb, ma, mb)[:, cols]
    b = t.battles
    table = BattleTable(t.players, Battles(b.player_a, b.player_b, b.outcome, feats), t.question_ids, t.n_unparsed_games)
    return CategoryTable(ct.category, table, ct.n_dropped), source


def leaderboard(ct: CategoryTable, rounds: int = 100, seed: int = 0) -> list[dict]:
    """One row per model (baseline last, 50): score, ci_low, ci_high (5–95), n_battles, n_dropped."""
    t = ct.table
    n = len(t.players)
    style = t.battles.features is not None
    if style:
        res = bt_scores(t.battles, n, baseline=0, rounds=rounds, seed=seed, ci=CI)
        score, low, high = res.score, res.ci_low, res.ci_high
    else:
        score, low, high = mean_scores(t.battles.player_a, t.battles.outcome, n, rounds, seed)
    rows = []
    for i, name in enumerate(t.players[1:], start=1):
        mine = t.battles.player_a == i
        rows.append({"model": name, "score": float(score[i]), "ci_low": float(low[i]), "ci_high": float(high[i]),
                     "n_battles": int(mine.sum()), "n_questions": len({q for q, m in zip(t.question_ids, mine) if m}),
                     "n_dropped_judgments": ct.n_dropped[name]})
    rows.sort(key=lambda r: -r["score"] if r["score"] == r["score"] else np.inf)
    coefs = {"style_coefs": [float(c) for c in res.style_coefs]} if style else {}
    rows.append({"model": t.players[0], "score": 50.0, "ci_low": 50.0, "ci_high": 50.0, "baseline": True, **coefs})
    return rows


def score(rows: list[dict], categories: list[str] | None = None, settings: dict[str, dict] | None = None,
          baseline: str | None = None, answers: dict[str, dict[str, dict]] | None = None,
          control: tuple[str, ...] = (), rounds: int = 100, seed: int = 0) -> dict[str, dict]:
    """{category: {"baseline", "leaderboard", "style_counts"}} for each category asked for (default:
    every category in the judgments), each against its own baseline (``baseline`` overrides it for
    all) and scored from all the judgments; ``control``: style features ("length", "markdown")."""
    present = sorted({str(r["category"]) for r in rows})
    for c in categories or []:
        if c not in present:
            raise UserError(f"no judgments in category {c!r} (the judgments have: {', '.join(present)})")
    out = {}
    for c in categories or present:
        base = baseline or category_baseline(c, rows, settings)
        ct = category_battles(rows, c, base)
        source = None
        if control:
            ct, source = with_style(ct, answers or {}, control)
        out[c] = {"baseline": base, "leaderboard": leaderboard(ct, rounds, seed), "style_counts": source}
    return out


# --- judging ---------------------------------------------------------------------------------------

def game_messages(cfg: dict, system_prompt: str, question: str, answer_a: str, answer_b: str) -> list[dict]:
    """The judge's messages for one game, as ``gen_judgment.pairwise_judgment``: the category's
    system prompt, then the config's template filled with QUESTION, ANSWER_A, ANSWER_B."""
    user = cfg["prompt_template"].format(QUESTION=question, ANSWER_A=answer_a, ANSWER_B=answer_b)
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def judge_game(client, cfg: dict, system_prompt: str, question: str, answer_a: str, answer_b: str) -> dict:
    """One game, one call (v2.0 asks no follow-up): ``{"score", "judgment": {"answer"}, "prompt"}``."""
    messages = game_messages(cfg, system_prompt, question, answer_a, answer_b)
    body = {"model": cfg["judge_model"], "temperature": cfg.get("temperature", 0.0),
            "max_tokens": cfg.get("max_tokens", 16000), "messages": messages}
    reply = client.chat(body)["choices"][0]["message"].get("content") or ""
    return {"score": parse_verdict(reply, cfg["regex_patterns"]), "judgment": {"answer": reply}, "prompt": messages}


def judge_answers(arena: ArenaDir, cfg: dict, settings: dict[str, dict], baseline: str | None, name: str,
                  answers: dict, questions: list[dict], out: Path, endpoint) -> Path:
    """Two games per question against its category's baseline (``baseline`` overrides), with the
    category's system prompt, through the OpenAI-compatible ``endpoint``; resumable as
    :func:`dicekit.evals.arena_hard.judge_answers`. Rows in v2.0's judgment format."""
    from dicekit.evals.openai_judge import ChatClient

    client = ChatClient(endpoint)
    cfg = {**cfg, "judge_model": endpoint.model}
    ident = json.dumps([endpoint.model, endpoint.public_url(), cfg["prompt_template"], cfg["regex_patterns"],
                        cfg.get("temperature", 0.0), cfg.get("max_tokens", 16000)])
    base_answers: dict[str, dict] = {}
    jobs = []
    for q in questions:
        cat = settings.get(q["category"])
        if cat is None:
            raise UserError(f"{arena.judge_utils}: no JUDGE_SETTINGS for category {q['category']!r} (question {q['question_id']})")
        base = baseline or cat["baseline"]
        if base not in base_answers:
            base_answers[base] = load_answers(arena.data / "model_answer" / f"{base}.jsonl")[1]
        if q["question_id"] not in answers or q["question_id"] not in base_answers[base]:
            raise UserError(f"no answer to question {q['question_id']} from {name if q['question_id'] not in answers else base}")
        a, b = answers[q["question_id"]]["text"], base_answers[base][q["question_id"]]["text"]

        def make_row(q=q, a=a, b=b, base=base, system=cat["system_prompt"]):
            games = [judge_game(client, cfg, system, q["prompt"], b, a), judge_game(client, cfg, system, q["prompt"], a, b)]
            return {"uid": q["question_id"], "category": q["category"], "judge": endpoint.model, "model": name,
                    "baseline": base, "games": games}
        jobs.append((judge_key(ident, cat["system_prompt"], q["prompt"], a, b), make_row))
    path = out / "model_judgment" / endpoint.model.replace("/", "_") / f"{name}.jsonl"
    return run_judge_jobs(client, path, jobs, len(questions))


def evaluate(*, arena: ArenaDir | None, files: list[Path] | None, answers=None, model: str | None = None,
             baseline: str | None = None, category: list[str] | None = None, control: tuple[str, ...] = (),
             bootstrap_rounds: int = 100, seed: int = 0, name: str | None = None, out=None,
             max_questions: int | None = None, generation: GenerationSettings = GenerationSettings(max_new_tokens=4096),
             judge_model: str | None = None, judge_endpoint: dict | None = None, quiet: bool = False) -> dict:
    """v2.0's side of :func:`dicekit.evals.arena_hard.evaluate_arena_hard`: score ``files``, or judge
    ``answers`` / generate with ``model`` first. Returns ``{"version", "rules", "judges",
    "style_control", "bootstrap_rounds", "seed", "interval", "categories": {category: {"baseline",
    "leaderboard", "style_counts"}}}``; with ``out``, also written as ``out/arena_hard_scores.json``."""
    settings = read_judge_settings(arena.judge_utils) if arena is not None and arena.judge_utils else None
    this_run: dict = {}
    if files is None:
        arena, out = judging_paths(arena, out)
        if arena.config is None or settings is None:
            raise UserError(f"{arena.data}: judging needs the checkout's config/{arena.data.name}.yaml and utils/judge_utils.py")
        cfg = read_config(arena.config)
        from dicekit.evals.openai_judge import Endpoint

        questions = load_questions(arena.data / "question.jsonl")[:max_questions]
        if model is not None:
            name, run_answers = generate_model_answers(model, questions, out, generation, name, quiet, layout="uid")
        else:
            file_name, run_answers = load_answers(Path(answers))
            name = name or file_name
        endpoint = Endpoint(model=judge_model or cfg["judge_model"], **(judge_endpoint or {}))
        files = [judge_answers(arena, cfg, settings, baseline, name, run_answers, questions, out, endpoint)]
        this_run[name] = run_answers
    rows = load_judgments(files)
    style_answers = answers_for_style(arena, None, this_run) if control else None
    cats = score(rows, category, settings, baseline, style_answers, control, bootstrap_rounds, seed)
    result = {"version": "v2.0", "rules": "arena-hard-auto 196f6b8 show_result.py",
              "judges": sorted({str(r.get("judge", "")) for r in rows} - {""}), "style_control": list(control),
              "bootstrap_rounds": bootstrap_rounds, "seed": seed, "interval": list(CI), "categories": cats}
    if out:
        rundir.write_json(Path(out) / "arena_hard_scores.json", result)
    return result
