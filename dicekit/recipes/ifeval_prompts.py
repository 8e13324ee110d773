"""Training prompts with verifiable instructions, for DICE rounds judged by IFEval.

Each prompt is a base task written for dicekit (``data/ifeval_base_tasks.txt``, one per line: none
taken from IFEval) followed by 1–3 instructions drawn from the IFEval instruction registry of the
checker package (``lm_eval.tasks.ifeval.instructions_registry``): every instruction type builds its
own description from arguments it draws itself, exactly as the IFEval authors generated theirs.
Conflicting instructions (the registry's ``INSTRUCTION_CONFLICTS``, made symmetric) never share a
prompt; ``combination:repeat_prompt`` comes last and asks to repeat the rest of the prompt, as in
IFEval. Each row keeps its ``instruction_id_list`` and ``kwargs`` (JSON), so
:func:`dicekit.evals.ifeval.score_response` scores a response to it with the same checker.

Seeded: prompt ``i`` of seed ``s`` depends only on (s, i) — a longer list extends a shorter one.
Disjoint from the 541 IFEval prompts (tests/test_ifeval_prompts.py: no shared prompt text, no base
task inside an IFEval prompt, no 8-word run shared with one).

Rows (JSONL, readable by :func:`dicekit.data.load_prompts`): ``prompt_id``, ``prompt``,
``instruction_id_list``, ``kwargs``, ``base_task_id``, ``base_task``, ``seed``.

``python -m dicekit.recipes.ifeval_prompts --n 512 --seed 0 --out prompts.jsonl`` writes a file.
"""

from __future__ import annotations

import functools
import hashlib
import random
from pathlib import Path

BASE_TASKS_FILE = Path(__file__).parent / "data" / "ifeval_base_tasks.txt"
# instruction types left out, and why
EXCLUDED = {
    "detectable_format:constrained_response": "the answer must be one of three fixed sentences (yes/no/maybe): "
                                              "fits only yes/no questions, none of the base tasks",
}
REPEAT = "combination:repeat_prompt"
N_INSTRUCTIONS_WEIGHTS = {1: 0.4, 2: 0.35, 3: 0.25}


def base_tasks() -> list[str]:
    """The base tasks, in file order (ids are positions)."""
    return [x.strip() for x in BASE_TASKS_FILE.read_text(encoding="utf-8").splitlines() if x.strip()]


@functools.lru_cache(maxsize=1)
def _registry():
    from dicekit.evals.ifeval import _checker

    _checker()  # Punkt data in place before the package's module is imported
    from lm_eval.tasks.ifeval import instructions_registry as reg

    conflicts = {k: set(v) for k, v in reg.INSTRUCTION_CONFLICTS.items()}
    for k in list(conflicts):  # symmetric, as the registry's conflict_make does, without mutating it
        for other in list(conflicts[k]):
            conflicts.setdefault(other, set()).add(k)
        conflicts[k].add(k)
    return reg.INSTRUCTION_DICT, conflicts


def instruction_types() -> list[str]:
    """The instruction types the generator draws from (registry order)."""
    registry, _ = _registry()
    return [k for k in registry if k not in EXCLUDED]


def _rng(seed: int, i: int, attempt: int = 0) -> random.Random:
    digest = hashlib.sha256(f"ifeval-prompts:{seed}:{i}:{attempt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _build(registry, iid: str, rng: random.Random, prompt_to_repeat: str | None = None) -> tuple[str, dict]:
    """(description, kwargs) of one instruction; the class draws its arguments from Python's
    ``random``, seeded here from ``rng`` and restored afterwards."""
    from dicekit.evals.ifeval import _seeded_random

    with _seeded_random(rng.getrandbits(64)):
        inst = registry[iid](iid)
        desc = inst.build_description(prompt_to_repeat=prompt_to_repeat) if iid == REPEAT else inst.build_description()
        kwargs = dict(inst.get_instruction_args() or {})
    return desc, kwargs


def _pick(types: list[str], conflicts: dict, n: int, rng: random.Random) -> list[str]:
    chosen: list[str] = []
    for _ in range(n):
        free = [t for t in types if not any(t in conflicts.get(c, ()) or c in conflicts.get(t, ()) for c in chosen)]
        if not free:
            break
        chosen.append(rng.choice(free))
    # repeat_prompt repeats everything before it, so it goes last
    return sorted(chosen, key=lambda t: t == REPEAT)


def make_prompt(i: int, seed: int = 0) -> dict:
    """Prompt ``i`` of the stream for ``seed`` (see the module docstring for the row's fields)."""
    registry, conflicts = _registry()
    types = [k for k in registry if k not in EXCLUDED]
    tasks = base_tasks()
    for attempt in range(100):
        rng = _rng(seed, i, attempt)
        task_id = rng.randrange(len(tasks))
        n = rng.choices(list(N_INSTRUCTIONS_WEIGHTS), weights=list(N_INSTRUCTIONS_WEIGHTS.values()))[0]
        ids = _pick(types, conflicts, n, rng)
        text, kwargs_list = tasks[task_id], []
        for iid in ids:
            desc, kwargs = _build(registry, iid, rng, prompt_to_repeat=text if iid == REPEAT else None)
            text = f"{text}\n{desc}" if iid == REPEAT else f"{text} {desc}"
            kwargs_list.append(kwargs)
        # the checker drops falsy arguments and would redraw them: keep only rows it reads as written
        if all(v not in (None, "", 0, [], {}) for kw in kwargs_list for v in kw.values()):
            return {"prompt_id": f"ifeval-train-s{seed}-{i:06d}", "prompt": text, "instruction_id_list": ids,
                    "kwargs": kwargs_list, "base_task_id": task_id, "base_task": tasks[task_id], "seed": seed}
    raise RuntimeError(f"no valid prompt for seed {seed}, index {i}")  # pragma: no cover - never seen


def make_prompts(n: int, seed: int = 0) -> list[dict]:
    """The first ``n`` distinct prompts of the stream for ``seed`` (a text produced earlier in the
    stream is skipped), so ``make_prompts(m)`` starts with ``make_prompts(n)`` for m > n."""
    rows, seen, i = [], set(), 0
    while len(rows) < n:
        row = make_prompt(i, seed)
        i += 1
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            rows.append(row)
    return rows


def write_prompts(path: str | Path, n: int, seed: int = 0) -> Path:
    """Write :func:`make_prompts` rows as JSONL (atomically)."""
    from dicekit.rundir import write_jsonl

    return write_jsonl(path, make_prompts(n, seed))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m dicekit.recipes.ifeval_prompts", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    print(f"wrote {args.n} prompts to {write_prompts(args.out, args.n, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
