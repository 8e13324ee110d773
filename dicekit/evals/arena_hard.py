"""Arena-Hard (v0.1): its data layout, the two-game judge protocol, verdicts → battles → BT scores.

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

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dicekit.data import read_jsonl_rows
from dicekit.errors import UserError, where
from dicekit.evals.bradley_terry import Battles, bt_scores, ratings, ratings_v01_style, style_features_v01

BENCH = "arena-hard-v0.1"
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

CODE_BLOCK = re.compile(r"```[^`]*```")


STYLE_KEYS = ("header_count", "list_count", "bold_count")


def metadata_counts(metadata: dict | None) -> tuple[float, np.ndarray] | None:
    """(token_len, [headers, lists, bold]) from arena-hard-auto answer metadata (``conv_metadata`` in
    v0.1, ``metadata`` in v2.0): each count an int or a dict of ints summed; None if incomplete.

    >>> metadata_counts({"token_len": 9, "header_count": {"h1": 1, "h2": 2}, "list_count": 3, "bold_count": {}})
    (9.0, array([3., 3., 0.]))
    """
    if not isinstance(metadata, dict) or not all(k in metadata for k in ("token_len", *STYLE_KEYS)):
        return None
    try:
        counts = [v if isinstance(v, (int, float)) else sum(v.values()) for v in (metadata[k] for k in STYLE_KEYS)]
        return float(metadata["token_len"]), np.array(counts, dtype=float)
    except (AttributeError, TypeError):
        return None


def text_counts(text: str) -> tuple[float, np.ndarray]:
    """(words, [headers, list items, bold spans]) counted from an answer's text with code blocks
    removed, with arena-hard-auto's patterns (``add_markdown_info.count_markdown_elements``)."""
    plain = CODE_BLOCK.sub("", text)
    headers = len(re.findall(r"^#{1,6}\s", plain, re.M))
    lists = len(re.findall(r"^\s*\d+\.\s", plain, re.M)) + len(re.findall(r"^\s*[-*+]\s", plain, re.M))
    bold = len(re.findall(r"\*\*[^*\n]+\*\*", plain)) + len(re.findall(r"__[^_\n]+__", plain))
    return float(len(text.split())), np.array([headers, lists, bold], dtype=float)


def style_counts(answers: list[dict]) -> tuple[np.ndarray, np.ndarray, str]:
    """(lengths (n,), markdown counts (n, 3), source) of answers ``{"text", "metadata"}``: from their
    metadata when every one has it, else every one from its text (so both sides of a battle are
    measured the same way)."""
    meta = [metadata_counts(a.get("metadata")) for a in answers]
    source = "metadata (tokens)"
    if any(m is None for m in meta):
        meta, source = [text_counts(a["text"]) for a in answers], "text (words)"
    return (np.array([m[0] for m in meta]), np.array([m[1] for m in meta]).reshape(-1, 3), source)


def style_pairs(models: list[str], baselines: list[str], question_ids: list[str],
                answers: dict[str, dict[str, dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(len_model, len_baseline, md_model, md_baseline, source) per battle; a missing answer is a
    UserError naming the model and question."""
    for name, base, qid in zip(models, baselines, question_ids):
        for who in (name, base):
            if who not in answers or qid not in answers[who]:
                raise UserError(f"style control needs {who!r}'s answer to question {qid} (model_answer/{who}.jsonl)")
    n = len(models)
    lengths, md, source = style_counts([answers[m][q] for m, q in zip(models + baselines, question_ids + question_ids)])
    return lengths[:n], lengths[n:], md[:n], md[n:], source


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
