"""IFEval (Zhou et al. 2023, arXiv:2311.07911): verifiable-instruction following, scored by the
IFEval checkers of the pinned PyPI package ``lm-eval`` (``lm_eval.tasks.ifeval``), never copied here.

What lives here:

* :func:`load_prompts` — the 541 official prompts, shipped in ``dicekit/evals/data/ifeval/``
  (Apache-2.0, provenance beside them): ``{"key", "prompt", "instruction_id_list", "kwargs"}``.
* :func:`check` — per-prompt strict and loose results, exactly the official ``evaluation_lib``
  definitions as the package implements them (loose: any of 8 variants of the response passes — the
  response, without ``*``, without its first / last / both lines; an empty response fails all).
* :func:`score_response` — the fraction of a list of instructions one response follows ("the checker
  as judge": simulated annotators, round diagnostics).
* :func:`evaluate_ifeval` — prompt- and instruction-level accuracy, strict and loose, with standard
  errors, per instruction type and per category, mean response length.
* :func:`read_responses` / :func:`write_responses` — ``{"prompt", "response"}`` JSONL, the official
  tool's input format; :func:`generate_responses` — one response per prompt through the
  evaluations' generation path (dicekit.evals.generation: HF or vLLM; greedy by default).

Deliberate choices, each pinned by ``tests/evals/test_ifeval.py``:

* NLTK's Punkt data come from a registry wheel, never downloaded at run time (dicekit.evals.punkt).
* langdetect is seeded (``DetectorFactory.seed = 0``): its detector is randomised otherwise.
* Python's ``random`` is seeded (``RANDOM_SEED``) around each prompt's checks, state restored after:
  the package's ``keywords:letter_frequency`` draws a random letter when the prompt's ``letter`` is
  not a–z (keys 1122 ``'#'`` and 1129 ``'!'``), as the code behind the paper did; seeded, that draw
  is the same in the strict and the loose pass and on every run. The current google-research code
  counts ``#``/``!`` as written; the parity test names the two prompts where this can differ.

Standard errors: prompt level, the standard error of the mean of 0/1 results (ddof = 1); instruction
level, clustered by prompt (instructions of one prompt are not independent; :func:`instruction_level`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dicekit.errors import UserError

CHECKER_PACKAGE = "lm-eval"
CHECKER_VERSION = "0.4.13"
RANDOM_SEED = 0
DATA_DIR = Path(__file__).parent / "data" / "ifeval"
PROMPTS_FILE = DATA_DIR / "input_data.jsonl"
N_PROMPTS = 541
# lm-eval's ifeval task: max_gen_toks 1280, greedy (its ifeval.yaml)
DEFAULT_MAX_NEW_TOKENS = 1280


# ---------------------------------------------------------------------------------------------- data

def load_prompts(path: str | Path | None = None, limit: int | None = None, keys: Iterable[int] | None = None) -> list[dict]:
    """The IFEval prompts (default: the 541 shipped ones) in file order; ``limit``: the first N;
    ``keys``: only these keys (in file order). Each row: key, prompt, instruction_id_list, kwargs."""
    from dicekit.data import read_jsonl_rows

    rows = []
    for line, r in read_jsonl_rows(path or PROMPTS_FILE):
        for field in ("key", "prompt", "instruction_id_list", "kwargs"):
            if field not in r:
                raise UserError(f"{path or PROMPTS_FILE}:{line}: missing field '{field}'")
        rows.append({"key": int(r["key"]), "prompt": r["prompt"], "instruction_id_list": list(r["instruction_id_list"]),
                     "kwargs": list(r["kwargs"])})
    if keys is not None:
        wanted = {int(k) for k in keys}
        unknown = wanted - {r["key"] for r in rows}
        if unknown:
            raise UserError(f"IFEval prompt keys not found: {sorted(unknown)[:5]}")
        rows = [r for r in rows if r["key"] in wanted]
    return rows[:limit] if limit is not None else rows


def read_responses(path: str | Path, prompts: Sequence[dict]) -> dict[str, str]:
    """prompt text -> response from a ``{"prompt", "response"}`` JSONL file, checked against
    ``prompts``: a row whose prompt is not an IFEval prompt, a duplicate prompt, a missing or
    non-text field, or a prompt of ``prompts`` without a response is a UserError naming file:line."""
    from dicekit.data import read_jsonl_rows

    known = {p["prompt"] for p in load_prompts()} | {p["prompt"] for p in prompts}
    out: dict[str, str] = {}
    for line, r in read_jsonl_rows(path):
        for field in ("prompt", "response"):
            if not isinstance(r.get(field), str):
                raise UserError(f"{path}:{line}: field '{field}' must be text")
        if r["prompt"] not in known:
            raise UserError(f"{path}:{line}: field 'prompt' is not an IFEval prompt ({r['prompt'][:60]!r})")
        if r["prompt"] in out:
            raise UserError(f"{path}:{line}: a second response to the same prompt")
        out[r["prompt"]] = r["response"]
    missing = [p for p in prompts if p["prompt"] not in out]
    if missing:
        raise UserError(f"{path}: no response to {len(missing)} of the {len(prompts)} prompts "
                        f"(first: key {missing[0]['key']}, {missing[0]['prompt'][:60]!r})")
    return out


def write_responses(path: str | Path, prompts: Sequence[dict], responses: dict[str, str]) -> Path:
    """``{"prompt", "response"}`` JSONL in the order of ``prompts`` (the official tool's input)."""
    from dicekit.rundir import write_jsonl

    return write_jsonl(path, [{"prompt": p["prompt"], "response": responses[p["prompt"]]} for p in prompts])


# ------------------------------------------------------------------------------------------- checker

@functools.lru_cache(maxsize=1)
def _checker():
    """lm-eval's IFEval module, with offline Punkt data and a seeded langdetect."""
    from dicekit.evals.punkt import ensure_punkt

    ensure_punkt()
    import langdetect

    langdetect.DetectorFactory.seed = 0
    from lm_eval.tasks.ifeval import utils

    return utils


@contextlib.contextmanager
def _seeded_random(seed: int = RANDOM_SEED):
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _check_one(utils, prompt: str, response: str, ids: Sequence[str], kwargs: Sequence[dict]) -> tuple[list[bool], list[bool]]:
    inp = utils.InputExample(key=0, instruction_id_list=list(ids), prompt=prompt, kwargs=[dict(k) for k in kwargs])
    with _seeded_random():
        strict = utils.test_instruction_following_strict(inp, response).follow_instruction_list
    with _seeded_random():
        loose = utils.test_instruction_following_loose(inp, response).follow_instruction_list
    return [bool(x) for x in strict], [bool(x) for x in loose]


def check(rows: Sequence[dict]) -> list[dict]:
    """Per-prompt results. ``rows``: dicts with prompt, response, instruction_id_list, kwargs (key
    optional). Returns, per row: key, prompt, response, instruction_id_list, ``strict`` and ``loose``
    (one bool per instruction), ``follow_all_strict``, ``follow_all_loose``."""
    utils = _checker()
    out = []
    for r in rows:
        strict, loose = _check_one(utils, r["prompt"], r["response"], r["instruction_id_list"], r["kwargs"])
        out.append({"key": r.get("key"), "prompt": r["prompt"], "response": r["response"],
                    "instruction_id_list": list(r["instruction_id_list"]), "strict": strict, "loose": loose,
                    "follow_all_strict": all(strict), "follow_all_loose": all(loose)})
    return out


def score_response(response: str, instruction_id_list: Sequence[str], kwargs: Sequence[dict], prompt: str = "",
                   loose: bool = False) -> float:
    """Fraction of the instructions that ``response`` follows (strict by default), in [0, 1]: the
    checker as a judge of one response. ``prompt`` is only needed by instructions that read it."""
    if not instruction_id_list:
        raise ValueError("no instructions to score against")
    strict_list, loose_list = _check_one(_checker(), prompt, response, instruction_id_list, kwargs)
    hits = loose_list if loose else strict_list
    return sum(hits) / len(hits)


# ------------------------------------------------------------------------------------------- metrics

def prompt_level(follow_all: Sequence[bool]) -> tuple[float, float]:
    """(accuracy, standard error): share of prompts whose instructions are all followed; the SE is
    the standard error of the mean of the 0/1 results (ddof = 1).

    Hand-worked: [1, 0, 1, 1] → mean 0.75; sample sd = sqrt(((.25)²·3 + (.75)²)/3) = 0.5; SE 0.5/2.

    >>> prompt_level([True, False, True, True])
    (0.75, 0.25)
    """
    from dicekit.evals.metrics import _sem

    x = np.asarray(follow_all, dtype=np.float64)
    return (float(x.mean()) if x.size else float("nan")), _sem(x)


def instruction_level(followed: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """(accuracy, standard error) over all instructions; ``followed``: one list of bools per prompt.
    Accuracy = Σ f_i / Σ m_i (f_i followed of m_i instructions in prompt i); the SE is clustered by
    prompt (ratio estimator): sqrt(n/(n−1) · Σ (f_i − acc·m_i)²) / Σ m_i.

    Hand-worked: prompts (f, m) = (1, 1), (0, 2) → acc = 1/3; residuals 2/3, −2/3; Σ r² = 8/9;
    × 2/1 = 16/9; sqrt = 4/3; / 3 = 4/9.

    >>> acc, se = instruction_level([[True], [False, False]])
    >>> round(acc, 12), round(se, 12)
    (0.333333333333, 0.444444444444)
    """
    f = np.array([sum(p) for p in followed], dtype=np.float64)
    m = np.array([len(p) for p in followed], dtype=np.float64)
    n, total = len(f), m.sum()
    if total == 0:
        return float("nan"), float("nan")
    acc = float(f.sum() / total)
    if n < 2:
        return acc, float("nan")
    return acc, float(np.sqrt(n / (n - 1) * np.sum((f - acc * m) ** 2)) / total)


def _breakdown(results: Sequence[dict], key) -> list[dict]:
    groups: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for r in results:
        for iid, s, lo in zip(r["instruction_id_list"], r["strict"], r["loose"]):
            groups[key(iid)].append((s, lo))
    return [{"name": name, "n": len(v), "strict_acc": sum(s for s, _ in v) / len(v),
             "loose_acc": sum(lo for _, lo in v) / len(v)} for name, v in sorted(groups.items())]


def summarize(results: Sequence[dict]) -> dict:
    """The metrics of :func:`check`'s per-prompt results (see :func:`evaluate_ifeval`)."""
    out: dict = {"n_prompts": len(results), "n_instructions": sum(len(r["strict"]) for r in results)}
    for mode in ("strict", "loose"):
        acc, se = prompt_level([r[f"follow_all_{mode}"] for r in results])
        out[f"prompt_level_{mode}_acc"], out[f"prompt_level_{mode}_se"] = acc, se
        out[f"n_prompts_followed_{mode}"] = int(sum(r[f"follow_all_{mode}"] for r in results))
        acc, se = instruction_level([r[mode] for r in results])
        out[f"inst_level_{mode}_acc"], out[f"inst_level_{mode}_se"] = acc, se
        out[f"n_instructions_followed_{mode}"] = int(sum(sum(r[mode]) for r in results))
        # the leaderboard-style single number: mean of prompt- and instruction-level accuracy
        out[f"average_prompt_inst_{mode}"] = (out[f"prompt_level_{mode}_acc"] + out[f"inst_level_{mode}_acc"]) / 2
    lengths = [len(r["response"]) for r in results]
    out["mean_response_chars"] = float(np.mean(lengths)) if lengths else float("nan")
    out["mean_response_words"] = float(np.mean([len(r["response"].split()) for r in results])) if results else float("nan")
    out["n_empty_responses"] = int(sum(not r["response"].strip() for r in results))
    out["by_instruction"] = _breakdown(results, lambda iid: iid)
    out["by_category"] = _breakdown(results, lambda iid: iid.split(":")[0])
    return out


def evaluate_ifeval(responses: dict[str, str] | Sequence[dict], prompts: Sequence[dict] | None = None) -> dict:
    """Score responses to the IFEval prompts. ``responses``: prompt text -> response, or a list of
    ``{"prompt", "response"}`` rows; ``prompts``: the prompts evaluated (default all 541; each must
    have a response). Returns a JSON-able dict: ``n_prompts``, ``n_instructions``; for mode in
    strict/loose ``prompt_level_<mode>_acc``/``_se``, ``inst_level_<mode>_acc``/``_se``,
    ``n_prompts_followed_<mode>``, ``n_instructions_followed_<mode>``,
    ``average_prompt_inst_<mode>``; ``mean_response_chars``, ``mean_response_words``,
    ``n_empty_responses``; ``by_instruction`` / ``by_category`` (rows name, n, strict_acc,
    loose_acc); ``checker``; and ``per_prompt`` (the output of :func:`check`)."""
    prompts = list(prompts) if prompts is not None else load_prompts()
    if not isinstance(responses, dict):
        responses = {r["prompt"]: r["response"] for r in responses}
    missing = [p["key"] for p in prompts if p["prompt"] not in responses]
    if missing:
        raise UserError(f"no response to {len(missing)} of the {len(prompts)} IFEval prompts (first: key {missing[0]})")
    results = check([{**p, "response": responses[p["prompt"]]} for p in prompts])
    return {**summarize(results), "checker": f"{CHECKER_PACKAGE}=={CHECKER_VERSION} (lm_eval.tasks.ifeval)",
            "per_prompt": results}


def paired_difference(a: Sequence[dict], b: Sequence[dict], mode: str = "strict", n_boot: int = 2000,
                      seed: int = 0) -> dict:
    """Prompt-level accuracy of ``a`` minus ``b`` (per-prompt results of the same prompts, from
    :func:`check` / ``per_prompt``), with a paired percentile-bootstrap 95% interval over prompts."""
    from dicekit.evals.reward_accuracy import bootstrap_ci

    by_key = {r["prompt"]: r[f"follow_all_{mode}"] for r in b}
    if len(by_key) != len(a) or any(r["prompt"] not in by_key for r in a):
        raise ValueError("paired_difference needs results for the same prompts")
    d = np.array([float(r[f"follow_all_{mode}"]) - float(by_key[r["prompt"]]) for r in a])
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)[0]
    return {"mode": mode, "difference": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": len(d)}


# ---------------------------------------------------------------------------------------- generation

def generate_responses(model_spec: str, prompts: Sequence[dict], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
                       dtype: str = "float32", backend: str = "hf", tensor_parallel_size: int = 1,
                       chunk_dir: str | Path | None = None, quiet: bool = True) -> dict[str, str]:
    """prompt text -> response of ``model_spec`` (folder, hub id or .gguf), chat template applied,
    greedy by default, through the evaluations' generation path
    (:func:`dicekit.evals.generation.generate_answers`: HF ``complete`` or vLLM). With ``chunk_dir``
    (HF backend), the prompts are generated in chunks of 64 saved there as they finish, so an
    interrupted run resumes; the chunks are only reused for the same model and decoding settings."""
    from dataclasses import asdict

    from dicekit.evals.generation import GenerationSettings, generate_answers
    from dicekit.models import model_fingerprint
    from dicekit.rundir import write_json, write_jsonl

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                  dtype=dtype, batch_size=batch_size, backend=backend,
                                  tensor_parallel_size=tensor_parallel_size)
    record = {"model": model_spec, "fingerprint": model_fingerprint(model_spec), **asdict(settings)}
    texts = [p["prompt"] for p in prompts]
    chunk = 64 if backend == "hf" and chunk_dir else max(1, len(texts))
    work = Path(chunk_dir) if chunk_dir and backend == "hf" else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        if (work / "settings.json").is_file() and json.loads((work / "settings.json").read_text()) != record:
            for f in work.glob("chunk_*.jsonl"):
                f.unlink()
        write_json(work / "settings.json", record)
    out: dict[str, str] = {}
    for lo in range(0, len(texts), chunk):
        part = texts[lo: lo + chunk]
        path = work / f"chunk_{lo // chunk:04d}.jsonl" if work else None
        if path is not None and path.is_file():
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            if [r["prompt"] for r in rows] == part:
                out.update({r["prompt"]: r["response"] for r in rows})
                continue
        res = generate_answers(model_spec, part, settings, quiet=quiet)
        if path is not None:
            write_jsonl(path, [{"prompt": p, "response": r} for p, r in zip(part, res)])
        out.update(zip(part, res))
        if not quiet:
            print(f"generated {min(lo + chunk, len(texts))}/{len(texts)} responses", file=sys.stderr)
    return out
