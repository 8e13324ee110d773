"""Arena-Hard (v0.1): its data layout, the two-game judge protocol, verdicts → battles → BT scores,
and :func:`evaluate_arena_hard` (generate -> judge -> score, what `dicekit eval arena-hard` runs, for
v0.1 here and for v2.0 through ``dicekit.evals.arena_hard_v2``; the parts both versions share, such as
answer files and cached judge jobs: ``dicekit.evals.arena_hard_run``).

Everything protocol-specific — questions, the baseline's answers (gpt-4-0314), the judge's system
prompt, prompt template, verdict regex and settings — is read from an arena-hard-auto checkout or
data folder the user points to (``config/judge_config.yaml`` + ``data/arena-hard-v0.1/``:
``question.jsonl``, ``model_answer/<model>.jsonl``, ``model_judgment/<judge>/<model>.jsonl``), or from
a hub dataset snapshot; dicekit carries none of that text.

Per question two games are judged: game 1 shows the baseline as assistant A and the model as B,
game 2 swaps them. Each game's verdict label ([[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]]; the
judge's answer must contain exactly one distinct label) becomes battles of the model against the
baseline, oriented by the game: a strong verdict counts as three battles, a tie as half a win.
Scores are Bradley–Terry fits (``dicekit.evals.bradley_terry``): baseline = 50.

Style control (``--style-control``) is v0.1's (arena-hard-auto 0489bf3): per battle the model's and
the baseline's token count and header / list / bold counts from the answer files' ``conv_metadata``,
compared as (a − b)/(a + b + 1), standardised, and fitted with v0.1's L2-penalised logistic
regression (``dicekit.evals.bradley_terry.ratings_v01_style``). Deviation: when an answer has no
``conv_metadata`` (v0.1 asserts), every answer in the fit is counted from its text instead (code
blocks removed, length in words — dicekit does not ship tiktoken), so both sides are measured alike.

Deviation: the mirrored spellings B<<A, B<A, B=A, A<B, A<<B are read as the labels they mean
(arena-hard-auto v0.1's show_result.py drops them; its v2 reads them as here). Battles are built per
model against the baseline from each judgment row's own ``model`` field.

Arena-Hard v2.0 (per-category baselines, mean scores, its layout): ``dicekit.evals.arena_hard_v2``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicekit import rundir
from dicekit.data import read_jsonl_rows
from dicekit.errors import UserError, where
from dicekit.evals.arena_hard_run import (answers_for_style, generate_model_answers, judge_key, judging_paths,
                                         judgment_files, run_judge_jobs)
from dicekit.evals.arena_hard_style import style_pairs
from dicekit.evals.bradley_terry import Battles, bt_scores, ratings, ratings_v01_style, style_features_v01
from dicekit.evals.generation import GenerationSettings

BENCH = "arena-hard-v0.1"
DEFAULT_BASELINE = "gpt-4-0314"
STRONG_WEIGHT = 3
# label -> (winner's position, number of battles)
LABELS = {"A>>B": ("A", STRONG_WEIGHT), "A>B": ("A", 1), "A=B": ("tie", 1), "B>A": ("B", 1), "B>>A": ("B", STRONG_WEIGHT)}
MIRRORED = {"B<<A": "A>>B", "B<A": "A>B", "B=A": "A=B", "A<B": "B>A", "A<<B": "B>>A"}


# --- data ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArenaDir:
    data: Path  # the folder holding question.jsonl
    config: Path | None  # judge_config.yaml (v0.1) or config/<bench>.yaml (current layout), if found
    layout: str = "question_id"  # "question_id": v0.1's files; "uid": the current (v2.0) layout
    judge_utils: Path | None = None  # utils/judge_utils.py of a current checkout (per-category settings)


def resolve(spec: str) -> Path:
    """A local folder, or ``hub:OWNER/NAME`` downloaded as a hub dataset snapshot."""
    if spec.startswith("hub:"):
        try:
            from huggingface_hub import snapshot_download

            spec = snapshot_download(repo_id=spec[4:], repo_type="dataset")
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot fetch the hub dataset {spec[4:]} ({type(e).__name__}); "
                            "pass an arena-hard-auto checkout with --arena-hard-dir") from None
    return Path(spec)


def locate(spec: str) -> ArenaDir:
    """An arena-hard-auto checkout, its data/arena-hard-v0.1 folder, or ``hub:OWNER/NAME``."""
    root = resolve(spec)
    for data in (root, root / "data" / BENCH, root / BENCH):
        if (data / "question.jsonl").is_file():
            configs = [c / "config" / "judge_config.yaml" for c in (data, data.parent, data.parent.parent)]
            configs += [data / "judge_config.yaml"]
            return ArenaDir(data, next((c for c in configs if c.is_file()), None))
    raise UserError(f"{root}: no question.jsonl (expected an arena-hard-auto checkout or its data/{BENCH} folder)")


def read_jsonl(path: Path, what: str) -> list[tuple[int, dict]]:
    """(line number, object) of a non-empty JSONL file (dicekit.data.read_jsonl_rows)."""
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    rows = read_jsonl_rows(path)
    if not rows:
        raise UserError(f"{path}: the {what} file is empty")
    return rows


def load_questions(arena: ArenaDir) -> list[dict]:
    """[{question_id, prompt, category}] from question.jsonl (first turn)."""
    path = arena.data / "question.jsonl"
    out = []
    for i, row in read_jsonl(path, "question"):
        try:
            out.append({"question_id": str(row["question_id"]), "prompt": row["turns"][0]["content"],
                        "category": row.get("category", "")})
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{where(path, i)}: needs question_id and turns[0].content") from None
    return out


def load_answers(path: Path) -> tuple[str, dict[str, dict]]:
    """(model name, {question_id: {"text", "metadata"}}) from a model_answer/<model>.jsonl."""
    answers, names = {}, set()
    for i, row in read_jsonl(path, "answer"):
        try:
            text = row["choices"][0]["turns"][0]["content"]
            qid = str(row["question_id"])
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{where(path, i)}: needs question_id and choices[0].turns[0].content") from None
        names.add(str(row.get("model_id") or row.get("model") or path.stem))
        answers[qid] = {"text": text, "metadata": row.get("conv_metadata")}
    if len(names) > 1:
        raise UserError(f"{path}: field 'model_id': {len(names)} models in one answer file")
    return names.pop(), answers


def load_judge_config(arena: ArenaDir) -> dict:
    from dicekit.config import read_yaml_mapping

    if arena.config is None:
        raise UserError(f"{arena.data}: no config/judge_config.yaml found beside the data folder")
    cfg = read_yaml_mapping(arena.config, "judge config")
    need = ["judge_model", "baseline_model", "system_prompt", "prompt_template", "regex_pattern"]
    missing = [k for k in need if k not in cfg]
    if missing:
        raise UserError(f"{arena.config}: missing field(s) {', '.join(missing)}")
    return cfg


def load_judgments(paths: list[Path]) -> list[dict]:
    """Judgment rows (v0.1 format), checked: question_id, model, two games each with a score."""
    rows = []
    for path in paths:
        for i, row in read_jsonl(path, "judgments"):
            games = row.get("games")
            if "question_id" not in row or "model" not in row:
                raise UserError(f"{where(path, i)}: needs question_id and model")
            if not isinstance(games, list) or len(games) != 2 or not all(isinstance(g, dict) for g in games):
                raise UserError(f"{where(path, i, 'games')}: expected two games")
            rows.append(row)
    return rows


# --- verdicts and battles --------------------------------------------------------------------------

def verdict_labels(judgment: str, pattern: str) -> set[str]:
    return {m.strip("\n") for m in re.findall(pattern, judgment) if m != ""}


def parse_verdict(judgment: str, pattern: str) -> str | None:
    r"""The one distinct label the judgment names (None if none or several), as arena-hard-auto.

    >>> parse_verdict("... so [[B>A]]. Final: [[B>A]]", r"\[\[([AB<>=]+)\]\]"), parse_verdict("[[A>B]] [[B>A]]", r"\[\[([AB<>=]+)\]\]")
    ('B>A', None)
    """
    found = verdict_labels(judgment, pattern)
    return found.pop() if len(found) == 1 else None


def canonical(label: str | None) -> str | None:
    if label is None:
        return None
    label = MIRRORED.get(label.strip(), label.strip())
    return label if label in LABELS else None


def game_outcomes(label: str | None, model_is_a: bool) -> list[float]:
    """Battle outcomes for the model (1 win, 0.5 tie, 0 loss) from one game's verdict.

    >>> game_outcomes("A>>B", model_is_a=False)  # game 1: the baseline is A and wins clearly
    [0.0, 0.0, 0.0]
    >>> game_outcomes("A>B", model_is_a=True), game_outcomes("B=A", model_is_a=False), game_outcomes("??", True)
    ([1.0], [0.5], [])
    """
    label = canonical(label)
    if label is None:
        return []
    winner, count = LABELS[label]
    if winner == "tie":
        return [0.5] * count
    model_wins = (winner == "A") == model_is_a
    return [1.0 if model_wins else 0.0] * count


@dataclass(frozen=True)
class BattleTable:
    players: list[str]  # index 0 is the baseline
    battles: Battles  # player_a = the model, player_b = the baseline; outcome for the model
    question_ids: list[str]  # per battle
    n_unparsed_games: dict[str, int]


def battles_from_judgments(rows: list[dict], baseline: str) -> BattleTable:
    players, a, outcome, qids = [baseline], [], [], []
    unparsed: dict[str, int] = {}
    for row in rows:
        model = str(row["model"])
        if model == baseline:
            continue
        if model not in players:
            players.append(model)
            unparsed[model] = 0
        for game, model_is_a in zip(row["games"], (False, True)):  # game 1: baseline is A
            got = game_outcomes(game.get("score"), model_is_a)
            unparsed[model] += not got
            a += [players.index(model)] * len(got)
            outcome += got
            qids += [str(row["question_id"])] * len(got)
    if len(players) == 1:
        raise UserError(f"no judgments of a model other than the baseline {baseline!r}")
    n = len(outcome)
    return BattleTable(players, Battles(np.array(a, dtype=int), np.zeros(n, dtype=int), np.array(outcome, dtype=float)),
                       qids, unparsed)


# --- style control ---------------------------------------------------------------------------------

def with_style(table: BattleTable, answers: dict[str, dict[str, dict]]) -> tuple[BattleTable, str]:
    """v0.1's style features (model minus baseline) attached to every battle, and where the counts
    came from."""
    models = [table.players[p] for p in table.battles.player_a]
    la, lb, ma, mb, source = style_pairs(models, [table.players[0]] * len(models), table.question_ids, answers)
    b = table.battles
    feats = style_features_v01(la, lb, ma, mb)
    return BattleTable(table.players, Battles(b.player_a, b.player_b, b.outcome, feats), table.question_ids,
                       table.n_unparsed_games), source


def leaderboard(table: BattleTable, rounds: int = 100, seed: int = 0) -> list[dict]:
    """One row per model (baseline last): score, ci_low, ci_high, n_battles, ... With style features,
    v0.1's penalised fit (:func:`dicekit.evals.bradley_terry.ratings_v01_style`)."""
    fit = ratings if table.battles.features is None else ratings_v01_style
    res = bt_scores(table.battles, len(table.players), baseline=0, rounds=rounds, seed=seed, fit=fit)
    rows = []
    for i, name in enumerate(table.players[1:], start=1):
        mine = table.battles.player_a == i
        rows.append({"model": name, "score": float(res.score[i]), "ci_low": float(res.ci_low[i]),
                     "ci_high": float(res.ci_high[i]), "n_battles": int(mine.sum()),
                     "n_questions": len({q for q, m in zip(table.question_ids, mine) if m}),
                     "n_unparsed_games": table.n_unparsed_games[name], "rating": float(res.rating[i])})
    rows.sort(key=lambda r: -r["score"])
    style = {"style_coefs": [float(c) for c in res.style_coefs]} if len(res.style_coefs) else {}
    rows.append({"model": table.players[0], "score": 50.0, "ci_low": 50.0, "ci_high": 50.0, "baseline": True, **style})
    return rows


# --- judging ---------------------------------------------------------------------------------------

def game_messages(cfg: dict, question: str, answer_a: str, answer_b: str) -> list[dict]:
    user = cfg["prompt_template"][0].format(question_1=question, answer_1=answer_a, answer_2=answer_b)
    return [{"role": "system", "content": cfg["system_prompt"]}, {"role": "user", "content": user}]


def judge_game(client, cfg: dict, question: str, answer_a: str, answer_b: str) -> dict:
    """One game. Without a verdict label in the answer, the judge is asked to finish, up to the
    config's ``number_of_judgment_attempts`` (default 1; the follow-up text is the config's
    ``continue_prompt``, else dicekit's own wording)."""
    attempts = int(cfg.get("number_of_judgment_attempts", 1))
    follow_up = cfg.get("continue_prompt", "Please end your evaluation with your final verdict label.")
    messages = game_messages(cfg, question, answer_a, answer_b)
    body = {"model": cfg["judge_model"], "temperature": cfg.get("temperature", 0), "max_tokens": cfg.get("max_tokens", 4096)}
    judgment, score = "", None
    for _ in range(attempts):
        reply = client.chat({**body, "messages": messages})["choices"][0]["message"].get("content") or ""
        judgment += "\n" + reply
        if verdict_labels(judgment, cfg["regex_pattern"]):  # one label, or several (no verdict): done
            score = parse_verdict(judgment, cfg["regex_pattern"])
            break
        messages = messages + [{"role": "assistant", "content": reply},
                               {"role": "user", "content": follow_up}]
    return {"user_prompt": messages[1]["content"], "judgment": judgment, "score": score}


# --- evaluating (what `dicekit eval arena-hard` runs; shared parts: arena_hard_run) -------------

def judge_answers(arena: ArenaDir, cfg: dict, baseline: str, name: str, answers: dict, questions: list[dict],
                  out: Path, endpoint) -> Path:
    """Judge ``answers`` against the baseline's (two games per question) with the OpenAI-compatible
    ``endpoint`` (dicekit.evals.openai_judge.Endpoint); rows are appended to
    ``out/model_judgment/<judge>/<name>.jsonl`` as they finish, and rows already there for the same
    judge, prompts and answers are reused. Raises :class:`JudgeCallsFailed` when some questions failed."""
    from dicekit.evals.openai_judge import ChatClient

    _, base_answers = load_answers(arena.data / "model_answer" / f"{baseline}.jsonl")
    client = ChatClient(endpoint)
    cfg = {**cfg, "judge_model": endpoint.model}
    ident = json.dumps([endpoint.model, endpoint.public_url(), cfg["system_prompt"], cfg["prompt_template"],
                        cfg["regex_pattern"], cfg.get("temperature", 0), cfg.get("max_tokens", 4096)])
    jobs = []
    for q in questions:
        if q["question_id"] not in answers or q["question_id"] not in base_answers:
            raise UserError(f"no answer to question {q['question_id']} from {name if q['question_id'] not in answers else baseline}")
        a, b = answers[q["question_id"]]["text"], base_answers[q["question_id"]]["text"]

        def make_row(q=q, a=a, b=b):
            games = [judge_game(client, cfg, q["prompt"], b, a), judge_game(client, cfg, q["prompt"], a, b)]
            return {"question_id": q["question_id"], "model": name, "judge": endpoint.model, "games": games}
        jobs.append((judge_key(ident, q["prompt"], a, b), make_row))
    path = out / "model_judgment" / endpoint.model.replace("/", "_") / f"{name}.jsonl"
    return run_judge_jobs(client, path, jobs, len(questions))


def score_v01(files: list[Path], baseline: str, arena: ArenaDir | None = None, style_control: bool = False,
              this_run: dict | None = None, bootstrap_rounds: int = 100, seed: int = 0) -> dict:
    """v0.1 scores of judgment files: the model's leaderboard row, the judges, baseline and rules."""
    rows = load_judgments(files)
    table = battles_from_judgments(rows, baseline)
    style_source = None
    if style_control:
        table, style_source = with_style(table, answers_for_style(arena, table.players, this_run or {}))
    board = leaderboard(table, rounds=bootstrap_rounds, seed=seed)
    return {**board[0], "version": "v0.1", "rules": "arena-hard-auto 0489bf3 show_result.py",
            "judges": sorted({str(r.get("judge", "")) for r in rows} - {""}), "baseline": baseline,
            "style_control": style_control, "style_counts": style_source, "bootstrap_rounds": bootstrap_rounds,
            "seed": seed, "interval": [2.5, 97.5], "leaderboard": board}


def evaluate_arena_hard(*, judgments: list[str | Path] | None = None, answers: str | Path | None = None,
                        model: str | None = None, arena_hard_dir: str | None = None, version: str | None = None,
                        baseline: str | None = None, category: list[str] | None = None, style_control: bool = False,
                        control_features: list[str] | None = None, bootstrap_rounds: int = 100, seed: int = 0,
                        name: str | None = None, out: str | Path | None = None, max_questions: int | None = None,
                        generation: GenerationSettings = GenerationSettings(max_new_tokens=4096),
                        judge_model: str | None = None, judge_endpoint: dict | None = None,
                        quiet: bool = False) -> dict:
    """Arena-Hard scores from exactly one source: ``judgments`` (files or folders: scores only),
    ``answers`` (a model_answer .jsonl: judge, score) or ``model`` (generate, judge, score).

    The rules follow the files: v0.1's layout (``question_id``) is scored here, the current layout
    (``uid``: v2.0) by :func:`dicekit.evals.arena_hard_v2.evaluate` (``category``,
    ``control_features`` apply there). ``version`` ("v0.1" / "v2.0") picks the benchmark folder of a
    checkout. Judging needs ``arena_hard_dir`` (questions, baseline answers, judge config) and
    ``out``; the judge is ``judge_model`` (default: the config's) on an OpenAI-compatible endpoint with
    the other :class:`~dicekit.evals.openai_judge.Endpoint` settings in ``judge_endpoint``. v0.1
    returns the model's leaderboard row with ``version``, ``judges``, ``baseline``, ``style_control``,
    ``bootstrap_rounds``, ``seed``, ``interval`` and the whole ``leaderboard``; with ``out``, also
    written as ``out/arena_hard_scores.json``."""
    from dicekit.evals import arena_hard_v2 as v2
    from dicekit.evals import arena_hard_v2_data as v2_data

    if sum(x is not None for x in (judgments, answers, model)) != 1:
        raise ValueError("evaluate_arena_hard: give exactly one of judgments, answers, model")
    arena = v2_data.locate(arena_hard_dir, version) if arena_hard_dir else None
    files = judgment_files(judgments) if judgments else None
    layout = v2_data.files_layout(files) if files else arena.layout if arena else None
    if version == "v2.0" and layout == "question_id" and files:
        raise UserError(f"{files[0]}: the judgments are in v0.1's layout (question_id), not v2.0's (uid)")
    if layout == "uid" or (layout is None and version == "v2.0"):
        return v2.evaluate(arena=arena, files=files, answers=answers, model=model, baseline=baseline,
                           category=category, control=tuple(control_features or (("length", "markdown") if style_control else ())),
                           bootstrap_rounds=bootstrap_rounds, seed=seed, name=name, out=out, max_questions=max_questions,
                           generation=generation, judge_model=judge_model, judge_endpoint=judge_endpoint, quiet=quiet)
    use_arena = arena if arena is not None and arena.layout == "question_id" else None
    cfg = load_judge_config(use_arena) if use_arena is not None and (use_arena.config or not judgments) else {}
    baseline = baseline or cfg.get("baseline_model") or DEFAULT_BASELINE
    this_run: dict = {}
    if not judgments:
        arena, out = judging_paths(arena, out)
        from dicekit.evals.openai_judge import Endpoint

        questions = load_questions(arena)[:max_questions]
        if model is not None:
            name, run_answers = generate_model_answers(model, questions, out, generation, name, quiet)
        else:
            file_name, run_answers = load_answers(Path(answers))
            name = name or file_name
        endpoint = Endpoint(model=judge_model or cfg["judge_model"], **(judge_endpoint or {}))
        files = [judge_answers(arena, cfg, baseline, name, run_answers, questions, out, endpoint)]
        this_run[name] = run_answers
    result = score_v01(files, baseline, use_arena, style_control, this_run, bootstrap_rounds, seed)
    if out:
        rundir.write_json(Path(out) / "arena_hard_scores.json", result)
    return result
