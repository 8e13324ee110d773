"""Arena-Hard v2.0's files, read and checked: its layout (questions, model answers, judgments; which
layout a folder or judgment file is in), the benchmark folder of a checkout, and the protocol text the
checkout carries (the per-category ``JUDGE_SETTINGS`` of ``utils/judge_utils.py``, read from its
syntax tree, never executed; the judge config). The scoring rules: :mod:`dicekit.evals.arena_hard_v2`."""

from __future__ import annotations

import ast
from pathlib import Path

from dicekit.errors import UserError, where
from dicekit.evals.arena_hard import ArenaDir, read_jsonl, resolve
from dicekit.evals.arena_hard import locate as locate_v01

BENCH = "arena-hard-v2.0"


# --- layout ----------------------------------------------------------------------------------------

def layout(row: dict) -> str | None:
    """"uid" for the current (v2.0) layout, "question_id" for v0.1's, None for neither."""
    return "uid" if "uid" in row else "question_id" if "question_id" in row else None


def answer_text(row: dict) -> str:
    """The answer of a v2.0 ``model_answer`` row: the last message's ``content.answer`` (or a plain
    string content)."""
    content = row["messages"][-1]["content"]
    text = content["answer"] if isinstance(content, dict) else content
    if not isinstance(text, str):
        raise TypeError
    return text


def load_questions(path: Path) -> list[dict]:
    """[{question_id, prompt, category}] from a v2.0 question.jsonl (``uid``, ``prompt``, ``category``)."""
    out = []
    for i, row in read_jsonl(path, "question"):
        try:
            out.append({"question_id": str(row["uid"]), "prompt": str(row["prompt"]), "category": str(row["category"])})
        except KeyError:
            raise UserError(f"{where(path, i)}: needs uid, category and prompt") from None
    return out


def load_answers(path: Path) -> tuple[str, dict[str, dict]]:
    """(model name, {uid: {"text", "metadata"}}) from a v2.0 model_answer/<model>.jsonl."""
    answers, names = {}, set()
    for i, row in read_jsonl(path, "answer"):
        try:
            answers[str(row["uid"])] = {"text": answer_text(row), "metadata": row.get("metadata")}
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{where(path, i)}: needs uid and messages[-1].content.answer") from None
        names.add(str(row.get("model") or path.stem))
    if len(names) > 1:
        raise UserError(f"{path}: field 'model': {len(names)} models in one answer file")
    return names.pop(), answers


def load_judgments(paths: list[Path]) -> list[dict]:
    """v2.0 judgment rows, checked: uid, category, model, and a list of two games (each a mapping or
    null); ``where`` is added for messages."""
    rows = []
    for path in paths:
        for i, row in read_jsonl(path, "judgments"):
            if not all(k in row for k in ("uid", "category", "model")):
                raise UserError(f"{where(path, i)}: needs uid, category and model (arena-hard-auto v2.0 judgment)")
            games = row.get("games")
            if not isinstance(games, list) or len(games) != 2 or not all(g is None or isinstance(g, dict) for g in games):
                raise UserError(f"{where(path, i, 'games')}: expected two games (each an object or null)")
            rows.append({**row, "where": where(path, i)})
    return rows


def locate(spec: str, version: str | None = None) -> ArenaDir:
    """The data folder of an arena-hard-auto checkout (``data/arena-hard-<version>``; without a
    version v2.0, else v0.1), that folder itself, or ``hub:OWNER/NAME``; the layout is read from its
    question.jsonl. A v0.1-layout folder is handed to :func:`dicekit.evals.arena_hard.locate`."""
    root = resolve(spec)
    benches = [f"arena-hard-{version}"] if version else [BENCH, "arena-hard-v0.1"]
    candidates = [root] + [root / "data" / b for b in benches] + [root / b for b in benches]
    data = next((d for d in candidates if (d / "question.jsonl").is_file()), None)
    if data is None:
        raise UserError(f"{root}: no question.jsonl (expected an arena-hard-auto checkout or its data/{benches[0]} folder)")
    first = read_jsonl(data / "question.jsonl", "question")[0]
    kind = layout(first[1])
    if kind is None:
        raise UserError(f"{where(data / 'question.jsonl', first[0])}: needs uid (or v0.1's question_id)")
    if kind == "question_id":
        return locate_v01(str(data))
    top = next((c for c in (data.parent.parent, data.parent, data) if (c / "config").is_dir() or (c / "utils").is_dir()), data)
    config = top / "config" / f"{data.name}.yaml"
    judge_utils = top / "utils" / "judge_utils.py"
    return ArenaDir(data, config if config.is_file() else None, "uid", judge_utils if judge_utils.is_file() else None)


def files_layout(paths: list[Path]) -> str:
    """"uid" or "question_id": the layout of judgment files (from each file's first row; mixed → error)."""
    kinds = {}
    for path in paths:
        line, row = read_jsonl(path, "judgments")[0]
        kind = layout(row)
        if kind is None:
            raise UserError(f"{where(path, line)}: needs uid (v2.0 layout) or question_id (v0.1 layout), and model")
        kinds.setdefault(kind, path)
    if len(kinds) > 1:
        raise UserError(f"{kinds['question_id']} is in v0.1's layout (question_id), {kinds['uid']} in v2.0's (uid): "
                        "score them separately")
    return kinds.popitem()[0]


# --- protocol text from the checkout ---------------------------------------------------------------

def _literal(node: ast.AST, env: dict):
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        return {_literal(k, env): _literal(v, env) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(x, env) for x in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left, env) + _literal(node.right, env)
    raise ValueError(type(node).__name__)


def read_judge_settings(path: Path) -> dict[str, dict]:
    """``JUDGE_SETTINGS`` ({category: {"baseline", "system_prompt"}}) of a checkout's
    ``utils/judge_utils.py``, read from its syntax tree (module-level constants only; nothing is
    executed).

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "judge_utils.py"
    >>> _ = f.write_text('P = "Judge." + " Fairly."\\nJUDGE_SETTINGS = {"hard_prompt": {"baseline": "b", "system_prompt": P}}')
    >>> read_judge_settings(f)
    {'hard_prompt': {'baseline': 'b', 'system_prompt': 'Judge. Fairly.'}}
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as e:
        raise UserError(f"{path}: cannot read ({type(e).__name__})") from None
    env: dict = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                env[stmt.targets[0].id] = _literal(stmt.value, env)
            except (KeyError, ValueError, TypeError):
                continue
    settings = env.get("JUDGE_SETTINGS")
    if not isinstance(settings, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("baseline"), str) and isinstance(v.get("system_prompt"), str)
            for v in settings.values()):
        raise UserError(f"{path}: no JUDGE_SETTINGS mapping of category -> {{baseline, system_prompt}}")
    return settings


def read_config(path: Path) -> dict:
    """A v2.0 judge configuration (``config/arena-hard-v2.0.yaml``), checked."""
    from dicekit.config import read_yaml_mapping

    cfg = read_yaml_mapping(path, "judge config")
    missing = [k for k in ("judge_model", "prompt_template", "regex_patterns") if k not in cfg]
    if missing:
        raise UserError(f"{path}: missing field(s) {', '.join(missing)}")
    if not isinstance(cfg["regex_patterns"], list) or not cfg["regex_patterns"]:
        raise UserError(f"{path}: field 'regex_patterns': expected a list of patterns")
    for key in ("QUESTION", "ANSWER_A", "ANSWER_B"):
        if "{" + key + "}" not in str(cfg["prompt_template"]):
            raise UserError(f"{path}: field 'prompt_template': no {{{key}}} placeholder")
    return cfg
