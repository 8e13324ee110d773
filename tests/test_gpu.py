"""GPU tests (``pytest -m gpu``; skipped without CUDA).

* the scorer on the GPU: float32 equals the CPU's float32; bfloat16 stays within a stated bound of it
  (docs/method-notes.md: on SmolLM2-135M bf16 sums differ from fp32 by ~0.5 nats, which is why rounds score in fp32);
* vLLM on the GPU: the sampler's own log-probs (float32 engine) equal the HF scorer's; the sample
  contract (stop token kept, "length" = max_new_tokens) holds;
* a tiny round end to end on the GPU (HF backend, and vLLM when installed), the run folder complete.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def gworld(tmp_path_factory):
    """The tiny world with head size 32 (what vLLM's attention kernels support)."""
    from tests.tiny import build_world

    return build_world(tmp_path_factory.mktemp("gpu_world"), hidden_size=64, num_heads=2)


@pytest.fixture(scope="module")
def batch(gworld):
    """(prompt_ids, response_ids) of 24 sampled responses of the policy (CPU, keyed sampler)."""
    from dicekit.data import load_prompts
    from dicekit.round.generate import _generate_batch
    from dicekit.models import load_model, prompt_ids, stop_token_ids
    from dicekit.round.sampling import sample_key

    model, tok = load_model(gworld["policy"])
    prompts = load_prompts(gworld["prompts"])
    p_ids = [prompt_ids(tok, p) for p in prompts["prompt"] for _ in range(2)]
    keys = [sample_key(0, 1, pid, k) for pid in prompts["prompt_id"] for k in range(2)]
    out = _generate_batch(model, int(tok.pad_token_id), stop_token_ids(model, tok), p_ids, keys,
                          max_new_tokens=24, temperature=1.0, top_p=1.0)
    return p_ids, [r for r, _, _ in out]


def _scores(spec, dtype, device, p_ids, r_ids):
    from dicekit.models import load_model
    from dicekit.round.score import score_sequences

    model, _ = load_model(spec, dtype=dtype, device=device)
    return score_sequences(model, p_ids, r_ids)


def test_fp32_gpu_scores_equal_cpu_and_bf16_stays_close(gworld, batch):
    """fp32 on the GPU = fp32 on the CPU (torch's default: no TF32 in matmuls; |Δ| < 1e-3 nats per response). bf16 is
    a different number: bounded here at 0.05 nats per token on average for this tiny model, and the
    test prints nothing — the bound is the record."""
    p_ids, r_ids = batch
    cpu = _scores(gworld["policy"], "float32", "cpu", p_ids, r_ids)
    gpu32 = _scores(gworld["policy"], "float32", "cuda", p_ids, r_ids)
    gpu16 = _scores(gworld["policy"], "bfloat16", "cuda", p_ids, r_ids)
    assert np.abs(gpu32 - cpu).max() < 1e-3
    n_tokens = np.array([len(r) for r in r_ids])
    per_token = np.abs(gpu16 - cpu) / n_tokens
    assert per_token.mean() < 0.05, per_token.mean()
    assert np.abs(gpu16 - cpu).max() > 0  # bf16 really is another number


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed")
def test_vllm_sampler_logps_equal_the_hf_scorer_on_gpu(gworld, batch):
    """A float32 vLLM engine on the GPU: sampled IDs keep their stop token, and the summed raw
    log-probs vLLM reports equal dicekit's fp32 scorer on the same IDs (|Δ| < 1e-2 nats; GPU fp32
    kernels differ in summation order), at T = 0.7 / top-p 0.9 (so they are not temperature-scaled)."""
    from dicekit.data import load_prompts
    from dicekit.models import load_model, prompt_ids, stop_token_ids
    from dicekit.round.score import score_sequences
    from dicekit.round.vllm_backend import VLLMEngine, sample_prompts

    model, tok = load_model(gworld["policy"], device="cuda")
    stop = stop_token_ids(model, tok)
    prompts = load_prompts(gworld["prompts"])
    ids = [prompt_ids(tok, p) for p in prompts["prompt"]]
    with VLLMEngine(gworld["policy"], dtype="float32", gpu_memory_utilization=0.3, max_model_len=256) as eng:
        flat = sample_prompts(eng, ids, list(prompts["prompt_id"]), seed=1, round_=1, samples_per_prompt=4,
                              max_new_tokens=16, temperature=0.7, top_p=0.9, stop_ids=stop)
        p_rep = [ids[i // 4] for i in range(len(flat))]
        r_ids = [r for r, _, _ in flat]
        prompt_lp = eng.score(p_rep, r_ids)
    for r, reason, _ in flat:
        assert (reason == "stop") == (r[-1] in stop) and (reason == "stop" or len(r) == 16)
    hf = score_sequences(model, p_rep, r_ids)
    sampler = np.array([lp for _, _, lp in flat])
    assert np.abs(sampler - hf).max() < 1e-2, np.abs(sampler - hf).max()
    assert np.abs(prompt_lp - hf).max() < 1e-2, np.abs(prompt_lp - hf).max()


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_tiny_round_end_to_end_on_gpu(gworld, tmp_path, backend, monkeypatch):
    """run_round on the GPU writes the whole run folder; sampling (HF) and scoring ran on the GPU."""
    import pandas as pd

    import dicekit.round.generate
    import dicekit.round.score
    from dicekit.config import RoundConfig, build
    from dicekit.round.run import run_round

    if backend == "vllm" and not HAS_VLLM:
        pytest.skip("vllm is not installed")
    devices = []

    def spy(real):
        def wrapped(model, *a, **k):
            devices.append(next(model.parameters()).device.type)
            return real(model, *a, **k)
        return wrapped

    monkeypatch.setattr(dicekit.round.score, "score_sequences", spy(dicekit.round.score.score_sequences))
    monkeypatch.setattr(dicekit.round.generate, "_generate_batch", spy(dicekit.round.generate._generate_batch))
    values = dict(run_dir=str(tmp_path / "run"), policy=gworld["policy"], reference=gworld["reference"],
                  prompts=gworld["prompts"], offline_data=gworld["offline"], samples_per_prompt=4,
                  min_valid_samples=2, max_new_tokens=16, temperature=1.0, generate_batch_size=16,
                  global_batch_size=4, per_device_batch_size=2, max_steps=3, learning_rate=1e-3, min_chars=0,
                  quiet=True, backend=backend)
    torch.cuda.reset_peak_memory_stats()
    rdir = run_round(build(RoundConfig, values, "test"))
    for name in ("config.yaml", "samples.parquet", "pairs.parquet", "alpha_sweep.csv", "train_log.jsonl",
                 "metrics.json", "model"):
        assert (rdir / name).exists(), name
    samples = pd.read_parquet(rdir / "samples.parquet")
    assert len(samples) == 12 * 4 and samples["valid"].any()
    assert torch.cuda.max_memory_allocated() > 0
    assert devices and set(devices) == {"cuda"}, devices  # HF sampling and scoring, not only training
