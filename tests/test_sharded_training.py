"""Sharded DPO training on 2 CPU processes (gloo): FSDP2 through accelerate's FSDP plugin, and
DeepSpeed ZeRO-3 where deepspeed is installed (`make test-deepspeed`).

accelerate (1.15) honours its FSDP plugin only on accelerator devices; on CPU the FSDP config
silently trains as DDP, so the rounds are launched through tests/sharded_cpu_worker.py, which switches
accelerate's state to FSDP (see there; DeepSpeed runs on CPU unchanged) and records what the save saw.
The accelerate configs are the shipped ones (benchmarks/zephyr-7b/), cut down to 2 CPU processes and
the tiny Llama.

Checks: the round trains (train_log.jsonl), π_t is saved as safetensors that reload with
from_pretrained with the input's parameter names and shapes, the save gathered a sharded model on
rank 0 only, and π_t equals the single-process π_t trained on the same pairs with the same seed
(same global batch of 4, same order: 2 processes × 2 rows vs 1 process × 2 rows × 2 accumulation
steps) within 1e-5 (bf16 mixed precision: 2e-2), while training moved the weights by ~2e-3.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_multiprocess import free_port

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # same BLAS reductions on both sides
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed not installed: `make test-deepspeed` runs these in .venv-deepspeed")


def _single_round(round_values, tmp_path) -> Path:
    cfg = tmp_path / "single.yaml"
    cfg.write_text(yaml.safe_dump({**round_values, "max_steps": 2, "run_dir": str(tmp_path / "single")}))
    one = subprocess.run([sys.executable, "-m", "dicekit", "run-round", "--config", str(cfg)],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    return tmp_path / "single" / "round_1"


def _accelerate_config(name: str, tmp_path: Path, **over) -> Path:
    """A shipped accelerate config, cut down to 2 CPU processes on the tiny Llama."""
    c = yaml.safe_load((ROOT / "benchmarks" / "zephyr-7b" / name).read_text())
    c.update(num_processes=2, **over)
    if "fsdp_config" in c:
        c["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] = "LlamaDecoderLayer"
    out = tmp_path / name
    out.write_text(yaml.safe_dump(c))
    return out


def _sharded_round(round_values, tmp_path, accel_cfg: Path, name: str, env: dict) -> Path:
    """A round launched by `accelerate launch` on 2 CPU processes; its saving is recorded in tmp_path/NAME_save.*"""
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({**round_values, "max_steps": 2, "run_dir": str(tmp_path / name)}))
    record = tmp_path / f"{name}_save"
    run = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accel_cfg),
                          "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
                          str(ROOT / "tests" / "sharded_cpu_worker.py"), "run-round", "--config", str(cfg)],
                         capture_output=True, text=True, env={**env, "DICEKIT_SHARDED_RECORD": str(record)},
                         cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path / name / "round_1"


def _check_against_single(single: Path, multi: Path, tol: float = 1e-5) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    for f in ("samples.parquet", "pairs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(single / f), pd.read_parquet(multi / f))
    steps = [json.loads(x) for x in (multi / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2]
    assert json.loads((multi / "metrics.json").read_text())["train_steps"] == 2
    assert not (multi / ".work").exists()
    # π_t reloads with from_pretrained, same names and shapes as π_{t-1}, in fp32
    policy = yaml.safe_load((multi / "config.yaml").read_text())["policy"]
    before = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(multi / "model", dtype=torch.float32).state_dict()
    assert {k: tuple(v.shape) for k, v in after.items()} == {k: tuple(v.shape) for k, v in before.items()}
    assert {v.dtype for v in load_file(multi / "model" / "model.safetensors").values()} == {torch.float32}
    want = AutoModelForCausalLM.from_pretrained(single / "model", dtype=torch.float32).state_dict()
    moved = max((want[k] - before[k]).abs().max().item() for k in want)
    diff = max((after[k] - want[k]).abs().max().item() for k in want)
    assert moved > 1e-4, moved  # training changed the weights, so equality below is not π_{t-1} == π_{t-1}
    assert diff < tol, f"sharded π_t differs from single-process π_t by {diff} (training moved weights by {moved})"


def test_fsdp2_two_cpu_processes_equal_one(round_values, tmp_path):
    single = _single_round(round_values, tmp_path)
    accel = _accelerate_config("accelerate_fsdp.yaml", tmp_path, mixed_precision="no")
    multi = _sharded_round(round_values, tmp_path, accel, "fsdp", ENV)
    recs = [json.loads((tmp_path / f"fsdp_save.rank{r}.json").read_text()) for r in range(2)]
    # the save went through accelerate's FSDP2 full-state-dict gather: sharded DTensor parameters on
    # both ranks, the full fp32 state on rank 0 only
    assert [(r["distributed_type"], r["is_fsdp2"], r["sharded_params"]) for r in recs] == [("FSDP", True, True)] * 2
    assert recs[0]["n_tensors"] > 0 and recs[1]["n_tensors"] == 0 and recs[0]["dtypes"] == ["torch.float32"]
    _check_against_single(single, multi)


def _zero3(round_values, tmp_path, name: str, mixed_precision: str, **round_over):
    pytest.importorskip("deepspeed")  # (needs_deepspeed skips before the fixtures are built)
    accel = _accelerate_config("accelerate_zero3.yaml", tmp_path, mixed_precision=mixed_precision)
    multi = _sharded_round({**round_values, **round_over}, tmp_path, accel, name, {**ENV, "DS_ACCELERATOR": "cpu"})
    rec = json.loads((tmp_path / f"{name}_save.save_pretrained.json").read_text())
    # ZeRO-3 really partitioned the weights (each rank owns half), rank 0 wrote
    assert (rec["rank"], rec["distributed_type"], rec["zero_stage"]) == (0, "DEEPSPEED", 3)
    assert rec["zero3_local_fraction"] == pytest.approx(0.5, abs=0.01)
    assert rec["saved_dtypes"] == ["torch.float32"]
    return multi, rec


@pytest.mark.slow
@needs_deepspeed
def test_zero3_two_cpu_processes_equal_one(round_values, tmp_path):
    """ZeRO-3 in fp32: π_t gathered from the optimizer's fp32 partitions equals the single-process π_t."""
    single = _single_round(round_values, tmp_path)
    multi, rec = _zero3(round_values, tmp_path, "zero3", "no")
    assert rec["param_dtypes"] == ["torch.float32"]
    _check_against_single(single, multi)


@pytest.mark.slow
@needs_deepspeed
def test_zero3_bf16_saves_fp32_master_weights(round_values, tmp_path):
    """The shipped ZeRO-3 config (bf16): DeepSpeed trains bf16 weights with fp32 masters; π_t is saved
    from the fp32 masters, not from the consolidated bf16 copy Trainer.save_model would write."""
    import torch
    from safetensors.torch import load_file

    single = _single_round(round_values, tmp_path)
    multi, rec = _zero3(round_values, tmp_path, "zero3_bf16", "bf16", train_dtype="bfloat16")
    assert rec["param_dtypes"] == ["torch.bfloat16"]
    saved = load_file(multi / "model" / "model.safetensors")
    flat = torch.cat([v.flatten() for v in saved.values()])
    assert flat.dtype == torch.float32
    # master weights carry updates finer than bf16 can hold: most of them are not bf16 values
    assert (flat != flat.bfloat16().float()).float().mean() > 0.5
    # and config.json says so, so that loading with dtype="auto" keeps them fp32
    conf = json.loads((multi / "model" / "config.json").read_text())
    assert conf.get("dtype", conf.get("torch_dtype")) == "float32"
    # bf16 compute: the same training, not the same bits (measured 3.9e-3 here)
    _check_against_single(single, multi, tol=2e-2)
