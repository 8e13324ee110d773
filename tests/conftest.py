import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and far more steadily when the machine is shared."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny tokenizer + π_0/π_{-1} pair + prompts + offline pairs (built once per session)."""
    from tests.tiny import build_world

    return build_world(tmp_path_factory.mktemp("tiny_world"))


@pytest.fixture
def round_values(tiny_world, tmp_path):
    """Config values for a fast round on the tiny world."""
    return dict(
        run_dir=str(tmp_path / "run"), policy=tiny_world["policy"], reference=tiny_world["reference"],
        prompts=tiny_world["prompts"], offline_data=tiny_world["offline"], samples_per_prompt=4,
        min_valid_samples=2, max_new_tokens=16, temperature=1.0, generate_batch_size=16, shard_prompts=4,
        global_batch_size=4, per_device_batch_size=2, max_steps=3, learning_rate=1e-3, min_chars=0, quiet=True,
    )
