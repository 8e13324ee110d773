"""A round launched as 2 CPU processes (torchrun, gloo) writes the same samples and pairs as one
process, and trains (DDP through TRL/accelerate)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(round_values, tmp_path):
    # the same BLAS thread count on both sides, so the floating-point reductions match exactly
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = {**round_values, "max_steps": 2}
    paths = {}
    for name in ("single", "multi"):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**base, "run_dir": str(tmp_path / name)}))
    one = subprocess.run([sys.executable, "-m", "dicekit", "run-round", "--config", str(paths["single"])],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(free_port()), "-m", "dicekit", "run-round", "--config",
                          str(paths["multi"])], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    for f in ("samples.parquet", "pairs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "single" / "round_1" / f),
                                      pd.read_parquet(tmp_path / "multi" / "round_1" / f))
    metrics = json.loads((tmp_path / "multi" / "round_1" / "metrics.json").read_text())
    assert metrics["train_steps"] == 2
    assert (tmp_path / "multi" / "round_1" / "model" / "model.safetensors").exists()
    assert not (tmp_path / "multi" / "round_1" / ".work").exists()
