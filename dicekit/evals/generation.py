"""One answer per evaluation prompt from a model under test: HF (the round's generator,
:func:`dicekit.round.generate.complete`) or vLLM (:mod:`dicekit.round.vllm_backend`, same chat
template and stop tokens). Used by AlpacaEval 2 and Arena-Hard; torch is imported only when called."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 2048
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    dtype: str = "float32"
    batch_size: int = 8
    backend: str = "hf"  # "hf" | "vllm"
    tensor_parallel_size: int = 1  # GPUs per vLLM engine


def model_name(model: str) -> str:
    """The name a model's answers are filed under: its folder or file name (``a/b.gguf`` -> ``b``)."""
    return Path(model.rstrip("/")).name.removesuffix(".gguf")


def generate_answers(model: str, prompts: list[str], settings: GenerationSettings = GenerationSettings(),
                     quiet: bool = False) -> list[str]:
    """One response text per prompt, in order."""
    if settings.backend == "vllm":
        return _complete_vllm(model, prompts, settings)
    from dicekit.models import load_model
    from dicekit.round.generate import complete

    net, tokenizer = load_model(model, dtype=settings.dtype)
    return complete(net, tokenizer, prompts, max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                    top_p=settings.top_p, seed=settings.seed, batch_size=settings.batch_size, quiet=quiet)


def _complete_vllm(model: str, prompts: list[str], s: GenerationSettings) -> list[str]:
    from dicekit.models import load_tokenizer, prompt_ids, stop_token_ids_of
    from dicekit.round.generate import decode_response
    from dicekit.round.vllm_backend import VLLMEngine, sample_prompts

    tok = load_tokenizer(model)
    stops = stop_token_ids_of(model, tok)
    ids = [prompt_ids(tok, x) for x in prompts]
    with VLLMEngine(model, tensor_parallel_size=s.tensor_parallel_size) as engine:
        outs = sample_prompts(engine, ids, [str(i) for i in range(len(ids))], seed=s.seed, round_=0,
                              samples_per_prompt=1, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                              top_p=s.top_p, stop_ids=stops, logprobs=False)
    return [decode_response(tok, r, stops) for r, _, _ in outs]
