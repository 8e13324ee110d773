"""`dicekit eval arena-hard`: Arena-Hard v0.1 — generate, judge, or only score existing judgments.

Modes:
  --judgments FILE [FILE ...]              scores only (Bradley–Terry vs the baseline; no judge calls)
  --arena-hard-dir DIR --answers FILE      judge these answers (arena-hard-auto model_answer format)
  --arena-hard-dir DIR --model PATH_OR_ID  generate answers first, then judge

Judging writes ``OUT/model_answer/<name>.jsonl`` and ``OUT/model_judgment/<judge>/<name>.jsonl`` in
arena-hard-auto's formats; each question's row is appended as soon as both games are judged, and
rows already there for the same judge, prompts and answers are reused (a crashed run resumes).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from dicekit import rundir
from dicekit.cliutil import parser
from dicekit.errors import UserError

DEFAULT_BASELINE = "gpt-4-0314"


def build_parser():
    p = parser("eval arena-hard", "Arena-Hard: Bradley-Terry score against the baseline (= 50) with a bootstrap 95% CI.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--judgments", nargs="+", help="judgment .jsonl files (or folders of them): scores only")
    src.add_argument("--answers", help="the model's answers (.jsonl, arena-hard-auto format): judge them")
    src.add_argument("--model", help="generate answers with this model, then judge them")
    p.add_argument("--arena-hard-dir", help="arena-hard-auto checkout, its data/arena-hard-v0.1 folder, or hub:OWNER/NAME")
    p.add_argument("--baseline", help=f"baseline model name (default: the judge config's, else {DEFAULT_BASELINE})")
    p.add_argument("--style-control", action="store_true", help="length and markdown features in the BT fit")
    p.add_argument("--bootstrap-rounds", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="bootstrap (and sampling) seed")
    p.add_argument("--name", help="model name for generated answers")
    p.add_argument("--out", help="output folder")
    p.add_argument("--max-questions", type=int, help="only the first N questions (smoke tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    g = p.add_argument_group("generation (--model)")
    g.add_argument("--max-new-tokens", type=int, default=4096)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--dtype", default="float32")
    g.add_argument("--batch-size", type=int, default=8)
    j = p.add_argument_group("judge (--answers, --model)")
    j.add_argument("--judge", help="judge model name (default: the judge config's judge_model)")
    j.add_argument("--judge-base-url", help="OpenAI-compatible base URL (default OpenAI's)")
    j.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    j.add_argument("--concurrency", type=int, default=8)
    j.add_argument("--max-retries", type=int, default=6)
    j.add_argument("--timeout", type=float, default=300.0)
    return p


def _judgment_files(specs: list[str]) -> list[Path]:
    paths = []
    for spec in specs:
        p = Path(spec)
        paths += sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    return paths


def _answers_for_style(arena, table, answers: dict) -> dict:
    """Every player's answers: those of this run plus the arena folder's model_answer/ files."""
    from dicekit.evals.arena_hard import load_answers

    if arena is None:
        raise UserError("--style-control needs --arena-hard-dir (the models' answers carry the style features)")
    answers = dict(answers)
    for name in table.players:
        if name in answers:
            continue
        path = arena.data / "model_answer" / f"{name}.jsonl"
        if path.is_file():
            answers[name] = load_answers(path)[1]
    return answers


def _write_answers(path: Path, name: str, questions: list[dict], texts: list[str]) -> None:
    rundir.write_jsonl(path, [
        {"question_id": q["question_id"], "answer_id": hashlib.sha256(f"{name}|{q['question_id']}".encode()).hexdigest()[:22],
         "model_id": name, "choices": [{"index": 0, "turns": [{"content": text}]}], "tstamp": time.time()}
        for q, text in zip(questions, texts)])


def _generate(args, questions: list[dict], out: Path) -> tuple[str, dict]:
    from dicekit.evals.arena_hard import load_answers
    from dicekit.generate import complete
    from dicekit.models import load_model

    name = args.name or Path(args.model.rstrip("/")).name.removesuffix(".gguf")
    path = out / "model_answer" / f"{name}.jsonl"
    if path.is_file():
        have = load_answers(path)[1]
        if all(q["question_id"] in have for q in questions):
            print(f"reusing {path}", file=sys.stderr)
            return name, have
    model, tok = load_model(args.model, dtype=args.dtype)
    texts = complete(model, tok, [q["prompt"] for q in questions], max_new_tokens=args.max_new_tokens,
                     temperature=args.temperature, top_p=args.top_p, seed=args.seed, batch_size=args.batch_size,
                     quiet=args.json)
    _write_answers(path, name, questions, texts)
    return name, load_answers(path)[1]


def _judge(args, arena, cfg: dict, baseline: str, name: str, answers: dict, questions: list[dict], out: Path) -> Path:
    from dicekit.evals.arena_hard import judge_game, load_answers
    from dicekit.evals.openai_judge import OPENAI_BASE_URL, CallFailed, ChatClient, Endpoint

    _, base_answers = load_answers(arena.data / "model_answer" / f"{baseline}.jsonl")
    endpoint = Endpoint(model=args.judge or cfg["judge_model"], base_url=args.judge_base_url or OPENAI_BASE_URL,
                        api_key_env=args.judge_api_key_env, timeout_s=args.timeout, max_retries=args.max_retries,
                        concurrency=args.concurrency)
    client = ChatClient(endpoint)
    cfg = {**cfg, "judge_model": endpoint.model}
    ident = json.dumps([endpoint.model, endpoint.public_url(), cfg["system_prompt"], cfg["prompt_template"],
                        cfg["regex_pattern"], cfg.get("temperature", 0), cfg.get("max_tokens", 4096)])
    path = out / "model_judgment" / endpoint.model.replace("/", "_") / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                done[row["dicekit_key"]] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash, or not ours
    todo = []
    for q in questions:
        if q["question_id"] not in answers or q["question_id"] not in base_answers:
            raise UserError(f"no answer to question {q['question_id']} from {name if q['question_id'] not in answers else baseline}")
        a, b = answers[q["question_id"]]["text"], base_answers[q["question_id"]]["text"]
        key = hashlib.sha256(json.dumps([ident, q["prompt"], a, b]).encode()).hexdigest()
        if key not in done:
            todo.append((q, a, b, key))
    lock, failures = threading.Lock(), []

    def one(q, a, b, key):
        games = [judge_game(client, cfg, q["prompt"], b, a), judge_game(client, cfg, q["prompt"], a, b)]
        row = {"question_id": q["question_id"], "model": name, "judge": endpoint.model, "games": games, "dicekit_key": key}
        with lock, path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        for fut in as_completed([pool.submit(one, *t) for t in todo]):
            try:
                fut.result()
            except CallFailed as e:
                failures.append(str(e))
    print(f"judge {endpoint.model}: {len(questions)} questions, {len(questions) - len(todo)} reused, "
          f"{client.stats.calls} calls, {client.stats.retries} retries", file=sys.stderr)
    if failures:
        print(f"dicekit eval arena-hard: {len(failures)} questions failed (first: {failures[0]}); "
              "rerun the same command to retry them — the rest are kept", file=sys.stderr)
        raise SystemExit(1)
    return path


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.evals import arena_hard as ah

    arena = ah.locate(args.arena_hard_dir) if args.arena_hard_dir else None
    cfg = ah.load_judge_config(arena) if arena is not None and (arena.config or not args.judgments) else {}
    baseline = args.baseline or cfg.get("baseline_model") or DEFAULT_BASELINE
    this_run: dict = {}
    if args.judgments:
        files = _judgment_files(args.judgments)
    else:
        if arena is None:
            raise UserError("judging needs --arena-hard-dir (questions, baseline answers, judge config)")
        if not args.out:
            raise UserError("judging needs --out (answers and judgments are written there)")
        out = Path(args.out)
        questions = ah.load_questions(arena)[: args.max_questions]
        if args.model:
            name, answers = _generate(args, questions, out)
        else:
            name, answers = ah.load_answers(Path(args.answers))
            name = args.name or name
        files = [_judge(args, arena, cfg, baseline, name, answers, questions, out)]
        this_run[name] = answers
    table = ah.battles_from_judgments(ah.load_judgments(files), baseline)
    if args.style_control:
        table = ah.with_style(table, _answers_for_style(arena, table, this_run))
    board = ah.leaderboard(table, rounds=args.bootstrap_rounds, seed=args.seed)
    result = {**board[0], "baseline": baseline, "style_control": args.style_control,
              "bootstrap_rounds": args.bootstrap_rounds, "seed": args.seed, "leaderboard": board}
    if args.out:
        rundir.write_json(Path(args.out) / "arena_hard_scores.json", result)
    if args.json:
        print(json.dumps(result))
    else:
        for r in board:
            ci = "" if r.get("baseline") else f"  95% CI [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  ({r['n_battles']} battles)"
            print(f"{r['model']:<40} {r['score']:5.1f}{ci}")
    return 0
