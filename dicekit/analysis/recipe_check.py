"""`dicekit check-recipe`: validate a DICE recipe offline and estimate what it will cost.

Nothing is downloaded. The round config is loaded exactly as `run-round` loads it (unknown keys and
bad values are errors); model and dataset specs must be local paths or hub ids ``org/name`` with an
optional ``@revision``; an accelerate config, if given, must parse and name a known strategy.
Architectures come from a local ``config.json`` (a model folder, or the hub cache when the model was
downloaded before), else from the built-in table below, else the estimates are skipped with a note.

Estimates (per GPU, GiB = 2^30 bytes), each with its assumptions spelled out in the output:

* **train** (DPO of π_t; reference log-probs are precomputed, so only the policy is in memory):
  model states per parameter — dicekit trains fp32 weights (``train_dtype`` bfloat16 is autocast,
  train.py): DDP ``16`` (fp32 weights, grads, AdamW m and v); FSDP full-shard ``16 / N``; DeepSpeed
  ZeRO-3 ``16 / N`` (bf16 weights and grads + fp32 master weights, m and v: Rajbhandari et al. 2020,
  "ZeRO", §3), ZeRO-2 ``2 + 14 / N``, ZeRO-1 ``4 + 12 / N``; FSDP and ZeRO-3 also hold two gathered
  layers (the one computing and the prefetched next). Activations: the
  tensors a Llama/Mistral layer keeps for backward, in 16-bit, per token: ``2·(7h + 2·kv + 4·I)``
  bytes (layer input, norm outputs, q/k/v, attention output, MLP input, gate/up outputs, the
  activation and its product; flash/SDPA attention keeps no s² scores); with gradient checkpointing
  only each layer's input (``2h`` bytes per token per layer) plus one layer being recomputed. Tokens
  per micro-batch = 2 (chosen + rejected) × per_device_batch_size × (prompt + max_new_tokens).
  Plus fp32 logits of one micro-batch (an upper bound: TRL computes them in chunks).
* **score** (the HF scorer, one model per process): weights in ``score_dtype`` + one batch of
  ``score_tokens_per_batch`` tokens (default: the GPU batch, ``config.GPU_TOKENS_PER_BATCH``) × ``(4h + 3I)``
  activations + a ``config.GPU_CHUNK``-position fp32 LM-head chunk.
* **generate** (vLLM): bf16 weights / tensor_parallel_size, and the KV cache per token
  ``2·L·kv_heads·head_dim·2`` bytes — the tokens that fit in the rest of ``gpu_memory_utilization``.
* **time**: FLOPs at ``mfu`` × the GPU's dense peak (2·P per token scored — each prompt once per model,
  as the scorer shares it across the K samples; the policy not at all with
  ``policy_logp_from_sampler`` — 6·P per token trained, 8·P
  with checkpointing' recomputation); generation at ``gen_tokens_per_s`` per engine. The throughputs
  and mean lengths are stated assumptions, to be replaced by measured numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from dicekit.config import GPU_CHUNK, GPU_TOKENS_PER_BATCH
from dicekit.errors import UserError

GIB = 2**30
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Arch:
    """A decoder-only Llama/Mistral-style architecture (config.json fields)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        """Embeddings (+ untied LM head) + per layer: q, o (h²), k, v (h·kv_dim), gate/up/down (3·h·I),
        two RMSNorms; + the final norm."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        layer = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate + 2 * h
        return self.vocab * h * (1 if self.tied else 2) + self.layers * layer + h


# Mistral 7B: Jiang et al. 2023, "Mistral 7B", Table 1 (dim 4096, 32 layers, head_dim 128, hidden_dim
# 14336, 32 heads, 8 KV heads, vocab 32000); zephyr-7b-beta and mistral-7b-sft-beta are fine-tunes of it.
MISTRAL_7B = Arch(32, 4096, 14336, 32, 8, 32000, source="Mistral 7B paper, Table 1 (Mistral-7B-v0.1)")
# Llama 3 8B: Llama Team 2024, "The Llama 3 Herd of Models", Table 3 (32 layers, model dim 4096, FFN dim
# 14336, 32 heads, 8 KV heads, vocabulary 128,000 + 256 special tokens = 128256 in config.json).
LLAMA3_8B = Arch(32, 4096, 14336, 32, 8, 128256, source="Llama 3 paper, Table 3 (Meta-Llama-3-8B)")
KNOWN_ARCHS = {
    "HuggingFaceH4/zephyr-7b-beta": MISTRAL_7B,
    "HuggingFaceH4/mistral-7b-sft-beta": MISTRAL_7B,
    "princeton-nlp/Llama-3-Base-8B-SFT-DPO": LLAMA3_8B,
    "princeton-nlp/Llama-3-Base-8B-SFT": LLAMA3_8B,
}
# splits of HuggingFaceH4/ultrafeedback_binarized (its dataset card)
KNOWN_SPLITS = {"HuggingFaceH4/ultrafeedback_binarized": {"train_prefs", "test_prefs", "train_sft", "test_sft",
                                                          "train_gen", "test_gen"}}
# dense peaks, TFLOP/s (NVIDIA datasheets: A100 80GB SXM; H100 SXM; H200 SXM), memory GiB as reported
GPUS = {
    "a100-80g": {"mem_gib": 80, "bf16_tflops": 312.0, "fp32_tflops": 19.5},
    "h100-80g": {"mem_gib": 80, "bf16_tflops": 989.0, "fp32_tflops": 67.0},
    "h200": {"mem_gib": 141, "bf16_tflops": 989.0, "fp32_tflops": 67.0},
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Assumptions:
    gpus: int = 8
    gpu: str = "a100-80g"
    gpu_mem_gib: float | None = None
    mfu: float = 0.4
    gen_tokens_per_s: float = 2000.0  # decoded tokens/s per vLLM engine
    mean_prompt_tokens: int = 200
    mean_response_tokens: int = 400
    max_prompt_tokens: int = 512  # for the worst-case activation estimate
    gpu_memory_utilization: float = 0.9


# ------------------------------------------------------------------------------------ validation


def check_spec(spec: str, where: str, kind: str = "model") -> dict:
    """A local path or a hub id[@revision]; returns {spec, id, revision, local, pinned}."""
    if not isinstance(spec, str) or not spec.strip() or spec != spec.strip():
        raise UserError(f"{where}: empty or padded {kind} spec {spec!r}")
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.exists():
            raise UserError(f"{where}: local {kind} path {spec} does not exist")
        return {"spec": spec, "id": str(path), "revision": None, "local": True, "pinned": True}
    name, _, rev = spec.partition("@")
    if not HUB_ID.match(name) or "--" in name or ".." in name:
        raise UserError(f"{where}: {spec!r} is neither an existing local path nor a hub id (org/name[@revision])")
    if "@" in spec and not REVISION.match(rev):
        raise UserError(f"{where}: bad revision {rev!r} in {spec!r} (a branch, tag or 40-hex commit)")
    return {"spec": spec, "id": name, "revision": rev or None, "local": False, "pinned": bool(COMMIT.match(rev or ""))}


def _arch_from_json(path: Path) -> Arch:
    c = json.loads(path.read_text())
    c = c.get("text_config", c)
    heads = int(c["num_attention_heads"])
    return Arch(int(c["num_hidden_layers"]), int(c["hidden_size"]), int(c["intermediate_size"]), heads,
                int(c.get("num_key_value_heads") or heads), int(c["vocab_size"]),
                bool(c.get("tie_word_embeddings", False)), source=str(path))


def find_arch(info: dict) -> Arch | None:
    """config.json of a local folder, else of the hub cache (offline), else the built-in table."""
    if info["local"]:
        p = Path(info["id"]) / "config.json"
        return _arch_from_json(p) if p.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(info["id"], "config.json", revision=info["revision"])
        if isinstance(cached, str) and Path(cached).is_file():
            return _arch_from_json(Path(cached))
    except Exception:  # no hub library or an unreadable cache: fall back to the table
        pass
    return KNOWN_ARCHS.get(info["id"])


def read_accelerate(path: str) -> dict:
    """{strategy, num_processes, mixed_precision} of an accelerate config file."""
    from dicekit.config import read_yaml_mapping

    c = read_yaml_mapping(path, "accelerate config")
    kind = c.get("distributed_type")
    if kind == "MULTI_GPU":
        strategy = "ddp"
    elif kind == "DEEPSPEED":
        stage = (c.get("deepspeed_config") or {}).get("zero_stage")
        if stage not in (1, 2, 3):
            raise UserError(f"{path}: key 'deepspeed_config.zero_stage' must be 1, 2 or 3, got {stage!r}")
        strategy = f"zero{stage}"
    elif kind == "FSDP":
        strategy = "fsdp"
    else:
        raise UserError(f"{path}: key 'distributed_type' must be MULTI_GPU, DEEPSPEED or FSDP, got {kind!r}")
    n = c.get("num_processes")
    if not isinstance(n, int) or n < 1:
        raise UserError(f"{path}: key 'num_processes' must be a positive integer, got {n!r}")
    return {"strategy": strategy, "num_processes": n, "mixed_precision": c.get("mixed_precision", "no")}


# ------------------------------------------------------------------------------------ estimates


def state_bytes_per_param(strategy: str, n: int) -> float:
    """Model-state bytes per parameter per GPU (weights + grads + AdamW m, v [+ fp32 master])."""
    return {"ddp": 16, "fsdp": 16 / n, "zero1": 4 + 12 / n, "zero2": 2 + 14 / n, "zero3": 16 / n}[strategy]


def activation_bytes(arch: Arch, tokens: int, checkpointing: bool) -> float:
    per_layer_token = 2 * (7 * arch.hidden + 2 * arch.kv_heads * arch.head_dim + 4 * arch.intermediate)
    if checkpointing:
        return tokens * (2 * arch.hidden * arch.layers + per_layer_token)
    return tokens * per_layer_token * arch.layers


def estimate(cfg, arch: Arch, a: Assumptions, strategies: list[str], n_offline: int) -> dict:
    gpu = GPUS[a.gpu]
    mem = a.gpu_mem_gib or gpu["mem_gib"]
    P = arch.params
    seq = a.max_prompt_tokens + cfg.max_new_tokens
    micro_tokens = 2 * cfg.per_device_batch_size * seq
    act = activation_bytes(arch, micro_tokens, cfg.gradient_checkpointing) + micro_tokens * arch.vocab * 4
    train = {}
    for s in strategies:
        states = P * state_bytes_per_param(s, a.gpus)
        if s in ("fsdp", "zero3"):  # the gathered layer and the prefetched next one (fp32 under FSDP)
            states += 2 * (P / arch.layers) * (2 if s == "zero3" else 4)
        train[s] = {"states_gib": states / GIB, "activations_gib": act / GIB, "total_gib": (states + act) / GIB,
                    "fits": (states + act) / GIB <= mem}
    sb = DTYPE_BYTES[cfg.score_dtype]
    score_act = ((cfg.score_tokens_per_batch or GPU_TOKENS_PER_BATCH) * (4 * arch.hidden + 3 * arch.intermediate) * sb
                 + GPU_CHUNK * arch.vocab * 4)
    score = {"weights_gib": P * sb / GIB, "activations_gib": score_act / GIB,
             "total_gib": (P * sb + score_act) / GIB}
    tp = getattr(cfg, "tensor_parallel_size", 1) or 1
    kv_per_token = 2 * arch.layers * arch.kv_heads * arch.head_dim * 2
    gen_weights = P * 2 / tp
    kv_room = max(0.0, mem * GIB * a.gpu_memory_utilization - gen_weights) * tp
    generate = {"weights_gib_per_gpu": gen_weights / GIB, "kv_bytes_per_token": kv_per_token,
                "kv_tokens_per_engine": int(kv_room // kv_per_token),
                "sequences_in_flight": int(kv_room // kv_per_token // seq)}
    # tokens and time per stage
    n_prompts = cfg.max_prompts
    n_samples = n_prompts * cfg.samples_per_prompt if n_prompts else None
    seq_mean = a.mean_prompt_tokens + a.mean_response_tokens
    peak_score = gpu["fp32_tflops" if cfg.score_dtype == "float32" else "bf16_tflops"] * 1e12
    peak_train = gpu["bf16_tflops" if cfg.train_dtype != "float32" else "fp32_tflops"] * 1e12
    engines = max(1, a.gpus // tp)
    stages = {}
    if n_samples:
        gen_tokens = n_samples * a.mean_response_tokens
        stages["generate"] = {"tokens": gen_tokens, "worst_case_tokens": n_samples * cfg.max_new_tokens,
                              "hours": gen_tokens / (a.gen_tokens_per_s * engines) / 3600}
        models = 1 if cfg.policy_logp_from_sampler else 2
        score_tokens = (models * (n_prompts * a.mean_prompt_tokens + n_samples * a.mean_response_tokens)
                        + n_offline * (a.mean_prompt_tokens + 2 * a.mean_response_tokens))
        stages["score"] = {"tokens": score_tokens,
                           "hours": 2 * P * score_tokens / (a.gpus * peak_score * a.mfu) / 3600}
    if cfg.max_steps:
        train_tokens = cfg.max_steps * cfg.global_batch_size * 2 * seq_mean
        flops_per_token = (8 if cfg.gradient_checkpointing else 6) * P
        stages["train"] = {"tokens": train_tokens,
                           "hours": flops_per_token * train_tokens / (a.gpus * peak_train * a.mfu) / 3600}
    return {"params": P, "arch": asdict(arch), "gpu": {**gpu, "name": a.gpu, "mem_gib": mem}, "train": train,
            "score": score, "generate": generate, "stages": stages, "assumptions": asdict(a),
            "micro_batch_tokens": micro_tokens}


# ------------------------------------------------------------------------------------ the check


def check_recipe(config_path: str, overrides: list[str] | None = None, accelerate: str | None = None,
                 assumptions: Assumptions = Assumptions()) -> dict:
    """Validate ``config_path`` (UserError on bad input) and return the report as a dict."""
    from dicekit import config

    cfg = config.load(config.RoundConfig, config_path, overrides)
    src = str(config_path)
    warnings: list[str] = []
    models = {}
    for key in ("policy", "reference"):
        info = check_spec(getattr(cfg, key), f"{src}: key '{key}'")
        arch = find_arch(info)
        models[key] = {**info, "arch_source": arch.source if arch else None}
        if not info["local"] and not info["pinned"]:
            warnings.append(f"{key} {info['spec']} is not pinned to a commit: it resolves to "
                            f"{info['revision'] or 'main'} at download time (pin with @<40-hex commit>)")
        models[key]["_arch"] = arch
    pa, ra = models["policy"]["_arch"], models["reference"]["_arch"]
    if pa and ra and pa.vocab != ra.vocab:
        raise UserError(f"{src}: policy and reference have different vocabularies ({pa.vocab} vs {ra.vocab}); "
                        "the implicit reward compares log-probs of the same token IDs")
    for key, split_key in (("prompts", "prompts_split"), ("offline_data", "offline_split")):
        spec = getattr(cfg, key)
        if spec is None:
            continue
        info = check_spec(spec, f"{src}: key '{key}'", kind="dataset")
        split = getattr(cfg, split_key)
        known = KNOWN_SPLITS.get(info["id"])
        if known and split not in known:
            raise UserError(f"{src}: key '{split_key}': {info['id']} has no split {split!r} "
                            f"(it has {', '.join(sorted(known))})")
    if accelerate:
        acc = read_accelerate(accelerate)
        strategies = [acc["strategy"]]
        a = Assumptions(**{**asdict(assumptions), "gpus": acc["num_processes"]})
    else:
        acc, strategies, a = None, ["ddp", "fsdp", "zero3"], assumptions
    # batch arithmetic: the TrainConfig methods train.dpo_args uses
    pairs_per_step = cfg.pairs_per_step(a.gpus)
    if pairs_per_step != cfg.global_batch_size:
        warnings.append(f"global_batch_size {cfg.global_batch_size} is not a multiple of per_device_batch_size × "
                        f"{a.gpus} GPUs = {cfg.per_device_batch_size * a.gpus}: each step trains on {pairs_per_step} pairs")
    big = pa is not None and pa.params > 1e9
    if big and getattr(cfg, "backend", "hf") == "hf":
        warnings.append("backend hf samples with transformers' generate; for a model this size use backend: vllm")
    n_pairs = cfg.max_pairs
    if cfg.max_steps and n_pairs:
        epochs = cfg.max_steps * pairs_per_step / n_pairs
        if abs(epochs - 1.0) > 0.05:
            warnings.append(f"max_steps × batch = {cfg.max_steps * pairs_per_step} pairs for {n_pairs} pairs: "
                            f"{epochs:.2f} epochs")
    n_offline = int(round((n_pairs or 0) * cfg.replay_ratio))
    est = estimate(cfg, pa, a, strategies, n_offline) if pa else None
    if est:
        for s, m in est["train"].items():
            if not m["fits"]:
                warnings.append(f"training under {s} needs about {m['total_gib']:.0f} GiB per GPU "
                                f"(> {est['gpu']['mem_gib']} GiB)")
    for m in models.values():
        m.pop("_arch")
    return {"config": src, "ok": True, "models": models, "accelerate": acc, "warnings": warnings, "estimate": est,
            "notes": [] if pa else [f"no architecture known for {cfg.policy} (not a local folder, not in the hub "
                                    "cache, not in the built-in table): estimates skipped"]}


def format_report(r: dict) -> str:
    """The human-readable report of :func:`check_recipe`."""
    out = [f"{r['config']}: valid round config"]
    for key, m in r["models"].items():
        rev = f" @ {m['revision']}" if m["revision"] else ""
        out.append(f"  {key:<9} {m['id']}{rev}  (architecture: {m['arch_source'] or 'unknown'})")
    if r["accelerate"]:
        acc = r["accelerate"]
        out.append(f"  accelerate: {acc['strategy']}, {acc['num_processes']} processes, "
                   f"mixed_precision {acc['mixed_precision']}")
    e = r["estimate"]
    if e:
        a, g = e["assumptions"], e["gpu"]
        out.append(f"  policy parameters: {e['params'] / 1e9:.2f} B")
        out.append(f"per-GPU memory on {a['gpus']} × {g['name']} ({g['mem_gib']} GiB), GiB:")
        out.append(f"  train (micro-batch {e['micro_batch_tokens']} tokens, worst case "
                   f"{a['max_prompt_tokens']}-token prompts):")
        for s, m in e["train"].items():
            out.append(f"    {s:<6} states {m['states_gib']:7.1f} + activations {m['activations_gib']:6.1f} = "
                       f"{m['total_gib']:7.1f}  {'fits' if m['fits'] else 'DOES NOT FIT'}")
        sc = e["score"]
        out.append(f"  score  weights {sc['weights_gib']:.1f} + activations {sc['activations_gib']:.1f} = "
                   f"{sc['total_gib']:.1f}")
        ge = e["generate"]
        out.append(f"  generate (vLLM, bf16) weights {ge['weights_gib_per_gpu']:.1f}; KV cache "
                   f"{ge['kv_bytes_per_token'] // 1024} KiB/token -> {ge['kv_tokens_per_engine']:,} tokens per "
                   f"engine at gpu_memory_utilization {a['gpu_memory_utilization']} "
                   f"(~{ge['sequences_in_flight']} full-length sequences)")
        out.append(f"per round, assuming mean prompt {a['mean_prompt_tokens']} / response "
                   f"{a['mean_response_tokens']} tokens, MFU {a['mfu']}, {a['gen_tokens_per_s']:g} generated "
                   f"tokens/s per engine (assumptions, not measurements):")
        for s, m in e["stages"].items():
            extra = f" (worst case {m['worst_case_tokens'] / 1e6:,.0f} M)" if "worst_case_tokens" in m else ""
            out.append(f"  {s:<8} {m['tokens'] / 1e6:8,.1f} M tokens{extra}  ~{m['hours']:.1f} h")
    for n in r["notes"]:
        out.append(f"note: {n}")
    for w in r["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out)
