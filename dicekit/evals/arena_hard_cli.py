"""`dicekit eval arena-hard`: Arena-Hard v0.1 and v2.0 — generate, judge, or only score existing judgments.

Modes:
  --judgments FILE [FILE ...]              scores only (no judge calls); several judge folders pool
  --arena-hard-dir DIR --answers FILE      judge these answers (arena-hard-auto model_answer format)
  --arena-hard-dir DIR --model PATH_OR_ID  generate answers first, then judge

The version follows the files: v0.1's layout (``question_id``) is scored as v0.1's show_result.py
(Bradley–Terry against one baseline, 95% interval; ``dicekit.evals.arena_hard``); the current layout
(``uid``, ``category``: Arena-Hard v2.0, and a current checkout's v0.1 data) as v2.0's (per-category
baselines, mean battle score, 5–95% interval; ``dicekit.evals.arena_hard_v2``). ``--version`` picks
the benchmark folder of a checkout and must agree with judgment files given directly.

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
    p = parser("eval arena-hard", "Arena-Hard v0.1 / v2.0: score against the baseline (= 50) with a bootstrap interval.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--judgments", nargs="+", help="judgment .jsonl files (or folders of them): scores only")
    src.add_argument("--answers", help="the model's answers (.jsonl, arena-hard-auto format): judge them")
    src.add_argument("--model", help="generate answers with this model, then judge them")
    p.add_argument("--arena-hard-dir", help="arena-hard-auto checkout, its data/arena-hard-<version> folder, or hub:OWNER/NAME")
    p.add_argument("--version", choices=["v0.1", "v2.0"], help="benchmark (default: v2.0 if the checkout has it, "
                   "else v0.1; judgment files: their layout)")
    p.add_argument("--baseline", help=f"baseline model name (default v0.1: the judge config's, else {DEFAULT_BASELINE}; "
                   "v2.0: each category's own)")
    p.add_argument("--category", nargs="+", help="v2.0 categories to score (default: all in the judgments)")
    p.add_argument("--style-control", action="store_true", help="length and markdown features in the fit")
    p.add_argument("--control-features", nargs="+", choices=["length", "markdown"],
                   help="v2.0: style control on these features only (implies --style-control)")
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


def _answers_for_style(arena, players: list[str], answers: dict) -> dict:
    """Every player's answers: those of this run plus the arena folder's model_answer/ files."""
    from dicekit.evals import arena_hard, arena_hard_v2

    if arena is None:
        raise UserError("--style-control needs --arena-hard-dir (the models' answers carry the style features)")
    load_answers = arena_hard_v2.load_answers if arena.layout == "uid" else arena_hard.load_answers
    answers = dict(answers)
    if players is None:  # every model_answer file, as v2.0's show_result.py reads them
        players = [p.stem for p in sorted((arena.data / "model_answer").glob("*.jsonl"))]
    for name in players:
        if name in answers:
            continue
        path = arena.data / "model_answer" / f"{name}.jsonl"
        if path.is_file():
            answers[name] = load_answers(path)[1]
    return answers


def _answer_row(layout: str, name: str, q: dict, text: str) -> dict:
    ans_id = hashlib.sha256(f"{name}|{q['question_id']}".encode()).hexdigest()[:22]
    if layout == "uid":  # v2.0 (gen_answer.py); no metadata: style control then counts from the text
        return {"uid": q["question_id"], "ans_id": ans_id, "model": name, "tstamp": time.time(),
                "messages": [{"role": "user", "content": q["prompt"]}, {"role": "assistant", "content": {"answer": text}}]}
    return {"question_id": q["question_id"], "answer_id": ans_id, "model_id": name,
            "choices": [{"index": 0, "turns": [{"content": text}]}], "tstamp": time.time()}


def _load_answers(layout: str, path: Path) -> tuple[str, dict]:
    from dicekit.evals import arena_hard, arena_hard_v2

    return (arena_hard_v2 if layout == "uid" else arena_hard).load_answers(path)


def _generate(args, arena, questions: list[dict], out: Path) -> tuple[str, dict]:
    from dicekit.generate import complete
    from dicekit.models import load_model

    name = args.name or Path(args.model.rstrip("/")).name.removesuffix(".gguf")
    path = out / "model_answer" / f"{name}.jsonl"
    if path.is_file():
        have = _load_answers(arena.layout, path)[1]
        if all(q["question_id"] in have for q in questions):
            print(f"reusing {path}", file=sys.stderr)
            return name, have
    model, tok = load_model(args.model, dtype=args.dtype)
    texts = complete(model, tok, [q["prompt"] for q in questions], max_new_tokens=args.max_new_tokens,
                     temperature=args.temperature, top_p=args.top_p, seed=args.seed, batch_size=args.batch_size,
                     quiet=args.json)
    rundir.write_jsonl(path, [_answer_row(arena.layout, name, q, t) for q, t in zip(questions, texts)])
    return name, _load_answers(arena.layout, path)[1]


def _endpoint(args, judge_model: str):
    from dicekit.evals.openai_judge import OPENAI_BASE_URL, Endpoint

    return Endpoint(model=args.judge or judge_model, base_url=args.judge_base_url or OPENAI_BASE_URL,
                    api_key_env=args.judge_api_key_env, timeout_s=args.timeout, max_retries=args.max_retries,
                    concurrency=args.concurrency)


def _run_jobs(args, client, path: Path, jobs: list[tuple[str, object]], n_questions: int) -> Path:
    """Judge each (key, make_row) not already in ``path`` (rows carry ``dicekit_key``), appending each
    row as it is done; failed questions are reported and the command exits 1 (rerun to retry them)."""
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

    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        for fut in as_completed([pool.submit(one, *t) for t in todo]):
            try:
                fut.result()
            except CallFailed as e:
                failures.append(str(e))
    print(f"judge {client.endpoint.model}: {n_questions} questions, {n_questions - len(todo)} reused, "
          f"{client.stats.calls} calls, {client.stats.retries} retries", file=sys.stderr)
    if failures:
        print(f"dicekit eval arena-hard: {len(failures)} questions failed (first: {failures[0]}); "
              "rerun the same command to retry them — the rest are kept", file=sys.stderr)
        raise SystemExit(1)
    return path


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _judge(args, arena, cfg: dict, baseline: str, name: str, answers: dict, questions: list[dict], out: Path) -> Path:
    """v0.1: two games per question against one baseline, the config's template and verdict rule."""
    from dicekit.evals.arena_hard import judge_game, load_answers
    from dicekit.evals.openai_judge import ChatClient

    _, base_answers = load_answers(arena.data / "model_answer" / f"{baseline}.jsonl")
    client = ChatClient(_endpoint(args, cfg["judge_model"]))
    model = client.endpoint.model
    cfg = {**cfg, "judge_model": model}
    ident = json.dumps([model, client.endpoint.public_url(), cfg["system_prompt"], cfg["prompt_template"],
                        cfg["regex_pattern"], cfg.get("temperature", 0), cfg.get("max_tokens", 4096)])
    jobs = []
    for q in questions:
        if q["question_id"] not in answers or q["question_id"] not in base_answers:
            raise UserError(f"no answer to question {q['question_id']} from {name if q['question_id'] not in answers else baseline}")
        a, b = answers[q["question_id"]]["text"], base_answers[q["question_id"]]["text"]

        def make_row(q=q, a=a, b=b):
            games = [judge_game(client, cfg, q["prompt"], b, a), judge_game(client, cfg, q["prompt"], a, b)]
            return {"question_id": q["question_id"], "model": name, "judge": model, "games": games}
        jobs.append((_key(ident, q["prompt"], a, b), make_row))
    return _run_jobs(args, client, out / "model_judgment" / model.replace("/", "_") / f"{name}.jsonl", jobs, len(questions))


def _judge_v2(args, arena, cfg: dict, settings: dict, name: str, answers: dict, questions: list[dict], out: Path) -> Path:
    """v2.0: two games per question against its category's baseline, with the category's system prompt."""
    from dicekit.evals import arena_hard_v2 as v2
    from dicekit.evals.openai_judge import ChatClient

    client = ChatClient(_endpoint(args, cfg["judge_model"]))
    model = client.endpoint.model
    cfg = {**cfg, "judge_model": model}
    ident = json.dumps([model, client.endpoint.public_url(), cfg["prompt_template"], cfg["regex_patterns"],
                        cfg.get("temperature", 0.0), cfg.get("max_tokens", 16000)])
    base_answers: dict[str, dict] = {}
    jobs = []
    for q in questions:
        cat = settings.get(q["category"])
        if cat is None:
            raise UserError(f"{arena.judge_utils}: no JUDGE_SETTINGS for category {q['category']!r} (question {q['question_id']})")
        baseline = args.baseline or cat["baseline"]
        if baseline not in base_answers:
            base_answers[baseline] = _load_answers("uid", arena.data / "model_answer" / f"{baseline}.jsonl")[1]
        if q["question_id"] not in answers or q["question_id"] not in base_answers[baseline]:
            raise UserError(f"no answer to question {q['question_id']} from {name if q['question_id'] not in answers else baseline}")
        a, b = answers[q["question_id"]]["text"], base_answers[baseline][q["question_id"]]["text"]

        def make_row(q=q, a=a, b=b, baseline=baseline, system=cat["system_prompt"]):
            games = [v2.judge_game(client, cfg, system, q["prompt"], b, a), v2.judge_game(client, cfg, system, q["prompt"], a, b)]
            return {"uid": q["question_id"], "category": q["category"], "judge": model, "model": name,
                    "baseline": baseline, "games": games}
        jobs.append((_key(ident, cat["system_prompt"], q["prompt"], a, b), make_row))
    return _run_jobs(args, client, out / "model_judgment" / model.replace("/", "_") / f"{name}.jsonl", jobs, len(questions))


def _print_board(board: list[dict], interval: str) -> None:
    for r in board:
        ci = "" if r.get("baseline") else f"  {interval} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  ({r['n_battles']} battles)"
        print(f"{r['model']:<40} {r['score']:5.1f}{ci}")


def _score_v01(args, arena, cfg: dict, files: list[Path], this_run: dict) -> dict:
    from dicekit.evals import arena_hard as ah

    baseline = args.baseline or cfg.get("baseline_model") or DEFAULT_BASELINE
    rows = ah.load_judgments(files)
    table = ah.battles_from_judgments(rows, baseline)
    style_source = None
    if args.style_control:
        table, style_source = ah.with_style(table, _answers_for_style(arena, table.players, this_run))
    board = ah.leaderboard(table, rounds=args.bootstrap_rounds, seed=args.seed)
    return {**board[0], "version": "v0.1", "rules": "arena-hard-auto 0489bf3 show_result.py",
            "judges": sorted({str(r.get("judge", "")) for r in rows} - {""}), "baseline": baseline,
            "style_control": args.style_control, "style_counts": style_source,
            "bootstrap_rounds": args.bootstrap_rounds, "seed": args.seed, "interval": [2.5, 97.5], "leaderboard": board}


def _score_v2(args, arena, files: list[Path], this_run: dict) -> dict:
    from dicekit.evals import arena_hard_v2 as v2

    rows = v2.load_judgments(files)
    settings = v2.read_judge_settings(arena.judge_utils) if arena is not None and arena.judge_utils else None
    control = tuple(args.control_features or (("length", "markdown") if args.style_control else ()))
    answers = _answers_for_style(arena, None, this_run) if control else None
    cats = v2.score(rows, args.category, settings, args.baseline, answers, control, args.bootstrap_rounds, args.seed)
    return {"version": "v2.0", "rules": "arena-hard-auto 196f6b8 show_result.py",
            "judges": sorted({str(r.get("judge", "")) for r in rows} - {""}), "style_control": list(control),
            "bootstrap_rounds": args.bootstrap_rounds, "seed": args.seed, "interval": [5.0, 95.0], "categories": cats}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dicekit.evals import arena_hard as ah
    from dicekit.evals import arena_hard_v2 as v2

    arena = v2.locate(args.arena_hard_dir, args.version) if args.arena_hard_dir else None
    this_run: dict = {}
    if args.judgments:
        files = _judgment_files(args.judgments)
        layout = v2.files_layout(files)
        if args.version == "v2.0" and layout == "question_id":
            raise UserError(f"{files[0]}: the judgments are in v0.1's layout (question_id), not v2.0's (uid)")
    else:
        if arena is None:
            raise UserError("judging needs --arena-hard-dir (questions, baseline answers, judge config)")
        if not args.out:
            raise UserError("judging needs --out (answers and judgments are written there)")
        layout, out = arena.layout, Path(args.out)
    cfg: dict = {}
    if layout == "question_id" and arena is not None and arena.layout == "question_id" and (arena.config or not args.judgments):
        cfg = ah.load_judge_config(arena)
    if not args.judgments:
        if layout == "uid":
            if arena.config is None or arena.judge_utils is None:
                raise UserError(f"{arena.data}: judging needs the checkout's config/{arena.data.name}.yaml and utils/judge_utils.py")
            cfg, settings = v2.read_config(arena.config), v2.read_judge_settings(arena.judge_utils)
        if layout == "uid":
            questions = v2.load_questions(arena.data / "question.jsonl")[: args.max_questions]
        else:
            questions = ah.load_questions(arena)[: args.max_questions]
        if args.model:
            name, answers = _generate(args, arena, questions, out)
        else:
            name, answers = _load_answers(layout, Path(args.answers))
            name = args.name or name
        if layout == "uid":
            files = [_judge_v2(args, arena, cfg, settings, name, answers, questions, out)]
        else:
            baseline = args.baseline or cfg.get("baseline_model") or DEFAULT_BASELINE
            files = [_judge(args, arena, cfg, baseline, name, answers, questions, out)]
        this_run[name] = answers
    result = _score_v01(args, arena, cfg, files, this_run) if layout == "question_id" else _score_v2(args, arena, files, this_run)
    if args.out:
        rundir.write_json(Path(args.out) / "arena_hard_scores.json", result)
    if args.json:
        print(json.dumps(result))
    elif layout == "question_id":
        print(f"# Arena-Hard v0.1, judge {', '.join(result['judges']) or '?'}, baseline {result['baseline']}")
        _print_board(result["leaderboard"], "95% CI")
    else:
        for cat, res in result["categories"].items():
            print(f"# Arena-Hard {cat}, judge {', '.join(result['judges']) or '?'}, baseline {res['baseline']}"
                  + (f", style control: {' + '.join(result['style_control'])}" if result["style_control"] else ""))
            _print_board(res["leaderboard"], "5-95%")
    return 0
