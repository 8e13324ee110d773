"""Build a pairwise judge from a spec string: ``oracle`` (the judge the caller passes as ``oracle``,
e.g. the task world's :class:`dicekit.world.judge.OracleJudge` — evals does not import the world,
which imports evals), ``hf:PATH_OR_ID`` (a local model's "m"/"M" next-token probabilities),
``ifeval:PROMPTS.jsonl`` (the IFEval checker, scoring each output's fraction of its prompt's
instructions followed), a YAML file of endpoint settings, or an OpenAI-compatible model name (key
read from the environment variable ``api_key_env``; never stored)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from dicekit.errors import UserError
from dicekit.evals.judges import PairwiseJudge


def judge_from_spec(spec: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                    concurrency: int = 8, max_retries: int = 6, timeout_s: float = 60.0,
                    price_per_mtok: tuple[float, float] | None = None, dtype: str = "float32", flag: str = "--judge",
                    oracle: Callable[[], PairwiseJudge] | None = None) -> PairwiseJudge:
    if spec == "oracle":
        if oracle is None:
            raise UserError(f"{flag} oracle: no oracle judge here (the oracle is the task world's; use it on world runs)")
        return oracle()
    if spec.startswith("ifeval:"):
        from dicekit.evals.ifeval_judge import IFEvalJudge

        return IFEvalJudge(spec[len("ifeval:"):])
    if spec.startswith("hf:"):
        from dicekit.evals.hf_judge import HFJudge

        return HFJudge(spec[3:], dtype=dtype)
    from dicekit.evals.openai_judge import OPENAI_BASE_URL, Endpoint, OpenAIJudge

    settings: dict = {"model": spec}
    if spec.endswith((".yaml", ".yml")):
        settings = endpoint_config(Path(spec))
    settings.setdefault("base_url", base_url or OPENAI_BASE_URL)
    settings.setdefault("api_key_env", api_key_env)
    settings.setdefault("concurrency", concurrency)
    settings.setdefault("max_retries", max_retries)
    settings.setdefault("timeout_s", timeout_s)
    if price_per_mtok:
        settings.setdefault("price_per_mtok", tuple(price_per_mtok))
    if "price_per_mtok" in settings:
        settings["price_per_mtok"] = tuple(settings["price_per_mtok"])
    endpoint = Endpoint(**settings)
    if endpoint.public_url() == OPENAI_BASE_URL and not os.environ.get(endpoint.api_key_env):
        raise UserError(f"{flag} {endpoint.model}: set ${endpoint.api_key_env} to the OpenAI API key "
                        "(or point the base URL at a local OpenAI-compatible server)")
    return OpenAIJudge(endpoint)


def endpoint_config(path: Path) -> dict:
    from dicekit.config import read_yaml_mapping
    from dicekit.evals.openai_judge import Endpoint

    data = read_yaml_mapping(path, "judge config")
    if "model" not in data:
        raise UserError(f"{path}: judge config needs at least 'model'")
    known = set(Endpoint.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    return data
