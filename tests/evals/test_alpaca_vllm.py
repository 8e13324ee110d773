"""`eval alpaca --backend vllm` without vllm installed: a one-line error, exit 2, nothing written."""

import importlib.util

import pytest

from tests.evals.conftest import run_cli


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_without_vllm_is_a_user_error(tiny_world, tmp_path, capsys):
    from tests.conftest import SHARED

    ref = SHARED / "fixtures" / "alpaca_eval" / "reference_outputs.json"
    if not ref.exists():
        pytest.skip("shared fixtures not present")
    code, out, err = run_cli(["eval", "alpaca", "--model", tiny_world["policy"], "--backend", "vllm",
                              "--reference-outputs", str(ref), "--max-instances", "2", "--judge", "oracle",
                              "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "needs the vllm package" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "model_outputs.json").exists()
