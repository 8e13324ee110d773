"""The one place that loads models and tokenizers and turns prompts into token IDs.

Sources: a local folder in save_pretrained format, a hub id (``org/name`` or ``org/name@revision``;
downloaded by transformers as usual; with ``HF_HUB_OFFLINE=1`` only from the local cache), or a
``.gguf`` file. A spec that looks like a local path is never looked up on the hub (a missing one is
an error at once); .gguf files are dequantised by transformers through ``gguf``. Prompts are rendered with the tokenizer's chat template exactly once, on the prompt only,
with ``add_generation_prompt=True``; the result starts with BOS exactly once when the model uses
one. Stop tokens are the union of the tokenizer's EOS and every id in the generation_config's
``eos_token_id`` (which may list several, e.g. Llama-3's <|eot_id|> and <|end_of_text|>).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from dicekit.errors import UserError

DTYPES = {"float32", "bfloat16", "float16"}


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ("org/name", "rev"); local paths are returned unchanged."""
    if "@" in spec and not Path(spec).exists():
        name, rev = spec.rsplit("@", 1)
        return name, rev or None
    return spec, None


def _source(spec: str) -> tuple[str, dict]:
    """(pretrained_name_or_path, extra from_pretrained kwargs) for a model spec, checking local paths.

    A spec that looks local (:func:`dicekit.rundir.is_local_spec`) never goes to the hub: if it does
    not exist it is a UserError at once. A hub id under ``HF_HUB_OFFLINE=1`` must be in the local
    cache (checked without a network call)."""
    from dicekit.rundir import is_local_spec

    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"{spec}: GGUF file not found")
        return str(path.parent), {"gguf_file": path.name}
    if is_local_spec(spec):
        if not path.is_dir():
            raise UserError(f"{spec}: model folder not found")
        if not (path / "config.json").is_file():
            raise UserError(f"{spec}: not a model folder (no config.json)")
        return str(path), {}
    name, rev = split_revision(spec)
    if hub_offline() and not _in_hub_cache(name, rev):
        raise UserError(f"{spec}: not a local folder, and a hub id not in the local cache (HF_HUB_OFFLINE=1)")
    if not hub_offline() and not _in_hub_cache(name, rev):
        unreachable = hub_unreachable()
        if unreachable:  # fail now, not after huggingface_hub's retries (about a minute)
            hint = f"no folder '{name.split('/')[0]}' here; a local path starting with ./ is never a hub id"
            raise UserError(f"{spec}: not a local folder ({hint}), not in the hub cache, and the hub cannot be "
                            f"reached ({unreachable})")
    return name, ({"revision": rev} if rev else {})


@lru_cache(maxsize=1)
def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub endpoint (HF_ENDPOINT, default https://huggingface.co) cannot be reached — one DNS
    lookup and TCP connect, ``timeout`` seconds at most — or None when it can, or when a proxy is
    configured (the connection then goes through it; huggingface_hub decides)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"
    return None


def check_source(spec: str) -> None:
    """A model spec's path checks alone (exists if local; cached if a hub id offline), fast."""
    _source(spec)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def _in_hub_cache(name: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # an id the hub would reject is not in the cache either
        return False
    return isinstance(found, str)


def load_tokenizer(spec: str):
    src, kw = _source(spec)  # path mistakes first, before transformers is imported
    from transformers import AutoTokenizer

    if not kw.get("gguf_file") and Path(src).is_dir():
        names = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"}
        if not any((Path(src) / n).is_file() for n in names):
            raise UserError(f"{spec}: model folder has no tokenizer (tokenizer.json / tokenizer_config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
    except (OSError, ValueError) as e:
        raise UserError(f"{spec}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def context_length(spec: str) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` or its synonyms in config.json),
    read without loading weights; None when the config does not say."""
    from transformers import AutoConfig

    src, kw = _source(spec)
    try:
        conf = AutoConfig.from_pretrained(src, **kw)
    except (OSError, ValueError) as e:
        raise UserError(f"{spec}: cannot read the model config ({str(e).splitlines()[0]})") from None
    conf = getattr(conf, "text_config", None) or conf
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(conf, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_token_limit(spec: str, max_new_tokens: int, max_prompt_tokens: int | None = None) -> int | None:
    """The ``max_prompt_tokens`` policy's limit: the value given, else the model's context minus
    ``max_new_tokens`` (the context itself when ``max_new_tokens`` is not below it: the prompt must fit,
    and generation stops at the context as it would anyway; None when the context is unknown). A
    given value above that is capped."""
    context = context_length(spec)
    room = None if context is None else (context - max_new_tokens if max_new_tokens < context else context)
    if max_prompt_tokens is None:
        return room
    return max_prompt_tokens if room is None else min(max_prompt_tokens, room)


def default_device() -> str | None:
    """This process's GPU (``cuda:LOCAL_RANK``) when there is one, else None (stay on the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"


def load_model(spec: str, dtype: str = "float32", device: str | None = "auto", tokenizer: bool = True):
    """(model, tokenizer) in eval mode. ``dtype`` in float32 | bfloat16 | float16. ``device``: "auto"
    (default) puts the model on this process's GPU if there is one (:func:`default_device`); None
    leaves it on the CPU where it was loaded (for trainers that place it themselves)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    src, kw = _source(spec)
    tok = load_tokenizer(spec) if tokenizer else None
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype), **kw)
    except (OSError, ValueError) as e:
        raise UserError(f"{spec}: cannot load model ({str(e).splitlines()[0]})") from None
    if kw.get("gguf_file"):
        # a dequantised GGUF model is a plain fp model; drop the quantizer so it can be saved
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
    if device == "auto":
        device = default_device()
    if device:
        model.to(device)
    model.eval()
    return model, tok


@contextmanager
def decode_attention(model):
    """While decoding: a half-precision model on a CPU uses eager attention instead of SDPA.

    PyTorch's CPU SDPA kernel is slow in bf16 for one query against a long cache: a decode step of
    SmolLM2-135M at batch 32 with 500 cached tokens (2 threads, AVX-512) took 503 ms with SDPA in bf16,
    293 ms with eager attention in bf16 and 408 ms with SDPA in fp32 (benchmarks/decode_step.py;
    benchmarks/README, "Generation"). fp32 models and GPUs keep their attention. Both decode paths (dicekit's loop and ``generate`` with the
    keyed draw) switch alike, so they stay token-equal; the attention is restored afterwards."""
    import torch

    before = getattr(model.config, "_attn_implementation", None)
    param = next(model.parameters(), None)
    switch = (param is not None and param.device.type == "cpu" and param.dtype in (torch.bfloat16, torch.float16)
              and before not in (None, "eager") and hasattr(model, "set_attn_implementation"))
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if switch:
            model.set_attn_implementation(before)


def stop_token_ids(model_or_config, tokenizer) -> list[int]:
    """The model's real stop tokens: tokenizer EOS + generation_config.eos_token_id (int or list)."""
    ids: list[int] = []
    gen = getattr(model_or_config, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    for v in [eos] if isinstance(eos, int) else list(eos or []):
        if v is not None and v not in ids:
            ids.append(int(v))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def stop_token_ids_of(spec: str, tokenizer) -> list[int]:
    """:func:`stop_token_ids` without loading the weights (reads generation_config.json if any)."""
    from transformers import GenerationConfig

    src, kw = _source(spec)
    try:
        gen = GenerationConfig.from_pretrained(src, **{k: v for k, v in kw.items() if k == "revision"})
    except (OSError, ValueError):
        gen = None
    if gen is None:  # no generation_config.json: derived from config.json, as from_pretrained does
        from transformers import AutoConfig

        try:
            gen = GenerationConfig.from_model_config(AutoConfig.from_pretrained(src, **kw))
        except (OSError, ValueError):
            gen = None

    class _Holder:
        generation_config = gen

    return stop_token_ids(_Holder, tokenizer)


def as_messages(prompt) -> list[dict]:
    """A prompt given as text or as a chat message list -> message list."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def prompt_ids(tokenizer, prompt) -> list[int]:
    """Token IDs of the templated prompt, generation prompt appended, BOS exactly once."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{tokenizer.name_or_path}: tokenizer has no chat template")
    enc = tokenizer.apply_chat_template(as_messages(prompt), tokenize=True, add_generation_prompt=True, return_dict=True)
    ids = list(enc["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None and _adds_bos(tokenizer):
        while len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        if not ids or ids[0] != bos:
            ids = [bos] + ids
    return ids


def _adds_bos(tokenizer) -> bool:
    """Does this tokenizer put BOS in front of ordinary encodes (i.e. does the model expect one)?"""
    bos = tokenizer.bos_token_id
    enc = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(enc) and enc[0] == bos


def end_of_turn_id(tokenizer, stop_ids: list[int]) -> int:
    """The stop token the chat template puts after an assistant message (what a sampler emits).

    Used to close offline responses given as text, so they end exactly as sampled ones do.
    """
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "u"}, {"role": "assistant", "content": "RESPONSE"}], tokenize=False
        )
        tail = tokenizer(text.split("RESPONSE", 1)[1], add_special_tokens=False)["input_ids"]
        for t in tail:
            if t in stop_ids:
                return int(t)
    except Exception:  # templates that reject this shape fall back to EOS
        pass
    return int(stop_ids[0] if stop_ids else tokenizer.eos_token_id)


def response_ids(tokenizer, text: str, eot_id: int) -> list[int]:
    """Token IDs of a response given as text, closed by the end-of-turn token."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [eot_id]


@lru_cache(maxsize=None)
def model_fingerprint(spec: str) -> str:
    """A short content-ish id for cache keys: the local folder's config + weight file sizes/mtimes,
    or the hub spec itself."""
    import hashlib

    p = Path(spec)
    h = hashlib.sha256(spec.encode())
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    elif p.is_file():
        st = p.stat()
        h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def save_model(model, tokenizer, out_dir: str | Path) -> None:
    """save_pretrained (safetensors) + tokenizer."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
