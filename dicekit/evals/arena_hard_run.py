"""What both Arena-Hard versions share when dicekit runs them: judgment and answer files, a model's
answers in arena-hard-auto's model_answer format (v0.1's ``question_id`` layout or v2.0's ``uid``
one), the judge's jobs appended and cached as they finish, and the paths judging needs. The
version-specific protocols: :mod:`dicekit.evals.arena_hard` (v0.1, and the entry point
:func:`~dicekit.evals.arena_hard.evaluate_arena_hard`) and :mod:`dicekit.evals.arena_hard_v2`."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from dicekit import rundir
from dicekit.errors import JudgeCallsFailed, UserError
from dicekit.evals.generation import GenerationSettings, generate_answers, model_name, within_context
from dicekit.progress import say

if TYPE_CHECKING:
    from dicekit.evals.arena_hard import ArenaDir


def judgment_files(specs: list[str | Path]) -> list[Path]:
    """Judgment .jsonl files: each spec a file, or a folder of them."""
    paths = []
    for spec in specs:
        p = Path(spec)
        paths += sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    return paths


def answer_loader(layout: str):
    """The model_answer reader of a layout: v2.0's (``uid``) or v0.1's (``question_id``)."""
    from dicekit.evals import arena_hard, arena_hard_v2_data

    return arena_hard_v2_data.load_answers if layout == "uid" else arena_hard.load_answers


def answers_for_style(arena: ArenaDir | None, players: list[str] | None, answers: dict) -> dict:
    """Every player's answers (``players`` None: every model_answer file, as v2.0's show_result.py
    reads them): those of this run plus the arena folder's model_answer/ files."""
    if arena is None:
        raise UserError("--style-control needs --arena-hard-dir (the models' answers carry the style features)")
    load = answer_loader(arena.layout)
    answers = dict(answers)
    if players is None:
        players = [p.stem for p in sorted((arena.data / "model_answer").glob("*.jsonl"))]
    for name in players:
        if name in answers:
            continue
        path = arena.data / "model_answer" / f"{name}.jsonl"
        if path.is_file():
            answers[name] = load(path)[1]
    return answers


def answer_row(layout: str, name: str, question: dict, text: str) -> dict:
    """One answer in arena-hard-auto's model_answer format: v0.1's (``question_id``, ``choices``) or
    the current one (``uid``, ``messages``; no ``metadata``, so style control counts from the text)."""
    q = question["question_id"]
    ans_id = hashlib.sha256(f"{name}|{q}".encode()).hexdigest()[:22]
    if layout == "uid":
        return {"uid": q, "ans_id": ans_id, "model": name, "tstamp": time.time(),
                "messages": [{"role": "user", "content": question["prompt"]}, {"role": "assistant", "content": {"answer": text}}]}
    return {"question_id": q, "answer_id": ans_id, "model_id": name,
            "choices": [{"index": 0, "turns": [{"content": text}]}], "tstamp": time.time()}


def generate_model_answers(model: str, questions: list[dict], out: Path, settings: GenerationSettings,
                           name: str | None = None, quiet: bool = False, layout: str = "question_id") -> tuple[str, dict]:
    """``out/model_answer/<name>.jsonl`` (reused when it answers every question) and its answers."""
    load = answer_loader(layout)
    name = name or model_name(model)
    path = out / "model_answer" / f"{name}.jsonl"
    if path.is_file():
        have = load(path)[1]
        if all(q["question_id"] in have for q in questions):
            say(f"reusing {path}", quiet)
            return name, have
    keep = within_context(model, [q["prompt"] for q in questions], settings,
                          lambda i: f"question {questions[i]['question_id']}")
    if not all(keep):
        say(f"{len(keep) - sum(keep)} questions longer than the model's context left out", quiet)
        questions = [q for q, k in zip(questions, keep) if k]
    texts = generate_answers(model, [q["prompt"] for q in questions], settings, quiet=quiet)
    rundir.write_jsonl(path, [answer_row(layout, name, q, t) for q, t in zip(questions, texts)])
    return name, load(path)[1]


def judge_key(*parts) -> str:
    """The cache key of one question's judgment: everything that determines it."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def run_judge_jobs(client, path: Path, jobs: list[tuple[str, object]], n_questions: int) -> Path:
    """Judge each ``(key, make_row)`` whose key is not yet in ``path`` (rows carry ``dicekit_key``),
    appending each row as soon as it is done, ``client.endpoint.concurrency`` at a time. Raises
    :class:`JudgeCallsFailed` when some questions failed (the rest are kept)."""
    from dicekit.evals.openai_judge import CallFailed

    path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                done.add(json.loads(line)["dicekit_key"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash, or not ours
    todo = [(key, make_row) for key, make_row in jobs if key not in done]
    lock, failures = threading.Lock(), []

    def one(key, make_row):
        row = {**make_row(), "dicekit_key": key}
        with lock, path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    with ThreadPoolExecutor(max_workers=max(1, client.endpoint.concurrency)) as pool:
        for fut in as_completed([pool.submit(one, *t) for t in todo]):
            try:
                fut.result()
            except CallFailed as e:
                failures.append(str(e))
    say(f"judge {client.endpoint.model}: {n_questions} questions, {n_questions - len(todo)} reused, "
        f"{client.stats.calls} calls, {client.stats.retries} retries")
    if failures:
        raise JudgeCallsFailed(f"{len(failures)} questions failed (first: {failures[0]}); "
                               "rerun the same command to retry them — the rest are kept")
    return path


def judging_paths(arena: ArenaDir | None, out) -> tuple[ArenaDir, Path]:
    """Judging needs a checkout (questions, baseline answers, judge config) and an output folder."""
    if arena is None:
        raise UserError("judging needs --arena-hard-dir (questions, baseline answers, judge config)")
    if not out:
        raise UserError("judging needs --out (answers and judgments are written there)")
    return arena, Path(out)
