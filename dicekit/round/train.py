"""Stage: one DPO round through TRL's DPOTrainer, on exact token IDs, reference log-probs supplied.

The trainer is fed rows of ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (the IDs the sampler
produced, or the templated offline pairs) and ``ref_chosen_logps``/``ref_rejected_logps`` (computed
by dicekit's scorer under the frozen reference π_{t-1}: for generated pairs these are the
``logp_policy`` values already scored for the implicit reward; only offline pairs need a reference
forward). Two protected DPOTrainer methods are overridden for this — ``_prepare_dataset`` (TRL would
re-tokenise text, possibly adding a second BOS and an EOS the model never emitted) and
``_precompute_ref_logps`` (TRL would recompute what we already have) — so trl is pinned exactly and
tests/test_train.py pins the behaviour (TRL's logged rewards equal dicekit's implicit reward).

Weights are kept in fp32; ``train_dtype: bfloat16`` trains in bf16 mixed precision (autocast).

With ``save_steps`` the trainer writes a checkpoint (weights, optimizer, scheduler, RNG states) every
``save_steps`` optimizer steps into the training's work folder, keeping the latest, and a training run
again with the same pairs, settings, starting model and seed resumes from it; checkpoints of another
training there are discarded. On one machine the resumed training ends with the same weights as an
uninterrupted one (tests/test_train.py).

Deliberate deviation from the official recipe: a warm-up is only honoured if asked for
(``warmup_steps > 0`` turns ``constant`` into ``constant_with_warmup``); the official 50 warm-up
steps under a ``constant`` schedule were a no-op, which is also what ``warmup_steps: 0`` does.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd

from dicekit import rundir
from dicekit.config import TrainConfig
from dicekit.models import load_model

TRAIN_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"]


def _trainer_class():
    from trl import DPOTrainer

    class TokenDPOTrainer(DPOTrainer):
        """DPOTrainer on rows that are already token IDs with reference log-probs attached."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            missing = [c for c in TRAIN_COLUMNS if c not in dataset.column_names]
            if missing:
                raise ValueError(f"training rows lack {missing}")
            return dataset

        def _precompute_ref_logps(self, dataset, name, batch_size):
            return dataset

    return TokenDPOTrainer


def jsonl_log_callback(path: Path):
    """A TrainerCallback appending each logged dict (with step and epoch) to ``path`` (rank 0 only);
    after each checkpoint it is the crash-test point ``train:<step>`` (:func:`dicekit.rundir.fault_point`)."""
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                with path.open("a") as f:
                    f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

        def on_save(self, args, state, control, **kwargs):
            rundir.fault_point(f"train:{state.global_step}")  # crash tests: right after a checkpoint

    return JsonlLog()


def _quiet_trainer(trainer, quiet: bool) -> None:
    """Keep a step progress bar (unless quiet) but not the per-step dict dumps; logs go to the jsonl."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not quiet:
        trainer.add_callback(StepBar())


def dpo_args(cfg: TrainConfig, output_dir: str, *, seed: int, world_size: int = 1):
    """TRL's DPOConfig from a :class:`~dicekit.config.TrainConfig` (a round's config is one): each
    setting under the name TRL gives it (``per_device_batch_size`` → ``per_device_train_batch_size``,
    ``num_epochs`` → ``num_train_epochs``, ``train_dtype: bfloat16`` → ``bf16``), the rest as is."""
    import torch
    from trl import DPOConfig

    accum = cfg.accumulation_steps(world_size)
    scheduler = cfg.lr_scheduler_type
    if cfg.warmup_steps > 0 and scheduler == "constant":
        scheduler = "constant_with_warmup"
    steps = cfg.max_steps if cfg.max_steps is not None else -1
    return DPOConfig(
        output_dir=output_dir,
        beta=cfg.beta,
        loss_type=list(cfg.loss_type),
        loss_weights=list(cfg.loss_weights) if cfg.loss_weights else None,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=scheduler,
        warmup_steps=cfg.warmup_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=accum,
        max_steps=steps,
        num_train_epochs=cfg.num_epochs,
        logging_steps=cfg.logging_steps,
        report_to=list(cfg.report_to) or "none",
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=1,  # the latest checkpoint only
        bf16=cfg.train_dtype == "bfloat16",
        use_cpu=not torch.cuda.is_available(),
        precompute_ref_log_probs=True,
        max_length=None,
        seed=seed,
        data_seed=seed,
        gradient_checkpointing=cfg.gradient_checkpointing,
        disable_tqdm=cfg.quiet,
        remove_unused_columns=False,
        dataloader_drop_last=False,
    )


def _deepspeed_fp32_state_dict(trainer) -> dict | None:
    """The fp32 master weights of a DeepSpeed-trained model, gathered from the optimizer's partitions.

    A collective: every rank must call it. Returns the full state dict on the main process and an
    empty dict elsewhere, or None when some trainable parameter has no fp32 master copy (no ZeRO
    optimizer), in which case the caller falls back to Trainer.save_model."""
    import torch
    from deepspeed.utils import safe_get_full_fp32_param

    model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    main = trainer.accelerator.is_main_process
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if any(not hasattr(p, "ds_id") and not hasattr(p, "_hp_mapping") for _, p in params):
        return None
    fp32 = {}
    for name, p in params:
        full = safe_get_full_fp32_param(p)  # all-gather (ZeRO-3) / all-reduce (ZeRO-1/2) on every rank
        if main:
            fp32[name] = full.detach().to("cpu", torch.float32).clone()
    # frozen parameters: gathered (ZeRO-3, again on every rank) as the model holds them
    import deepspeed

    rest = [(n, p) for n, p in model.named_parameters() if not p.requires_grad]
    with deepspeed.zero.GatheredParameters([p for _, p in rest], modifier_rank=None):
        if main:
            fp32.update({n: p.detach().to("cpu").clone() for n, p in rest})
    if not main:
        return {}
    for n, b in model.named_buffers():
        fp32.setdefault(n, b.detach().to("cpu").clone())
    keys = set(model.state_dict().keys())
    return {k: (v.float() if v.is_floating_point() else v) for k, v in fp32.items() if k in keys}


def _save_model(trainer, out: Path) -> None:
    """Save π_t as safetensors loadable by from_pretrained, from fp32 weights, only rank 0 writing.

    DDP and FSDP (FULL_STATE_DICT) go through Trainer.save_model, which gathers the full state dict on
    rank 0. Under DeepSpeed, Trainer.save_model saves ZeRO-3's consolidated 16-bit copy (bf16 under
    bf16 mixed precision, losing updates below half a bf16 step) or, without
    ``stage3_gather_16bit_weights_on_model_save``, a DeepSpeed checkpoint that from_pretrained cannot
    read; the fp32 master weights are gathered from the ZeRO optimizer instead."""
    state = None
    if getattr(trainer, "is_deepspeed_enabled", False):
        state = _deepspeed_fp32_state_dict(trainer)
    if state is None:
        trainer.save_model(str(out))
    elif trainer.accelerator.is_main_process:
        import torch

        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        model.save_pretrained(str(out), state_dict=state)
        # the model's own parameters may be bf16 (DeepSpeed casts them); the files hold fp32
        cfg_path = out / "config.json"
        conf = json.loads(cfg_path.read_text())
        if conf.get("dtype", conf.get("torch_dtype")) not in (None, "float32"):
            conf["dtype"] = str(torch.float32).removeprefix("torch.")
            conf.pop("torch_dtype", None)
            cfg_path.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


def _check_fsdp_saves_full_state(trainer) -> None:
    """π_t must be saved whole (from_pretrained-loadable safetensors): refuse, before training, an FSDP
    set-up whose save would write shards instead."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    kind = str(getattr(plugin, "state_dict_type", "")) if plugin is not None else ""
    if kind and "FULL_STATE_DICT" not in kind:
        from dicekit.errors import UserError

        raise UserError(f"accelerate config: fsdp_state_dict_type is {kind.split('.')[-1]}; dicekit saves π_t "
                        "whole, set fsdp_state_dict_type: FULL_STATE_DICT")


# settings that do not change what is trained: a checkpoint written under other values is resumed
_NOT_IN_IDENTITY = ("quiet", "report_to", "save_steps", "logging_steps")


def training_identity(policy: str, ds_columns: dict, cfg: TrainConfig, seed: int, world_size: int) -> str:
    """sha256 of what determines a training's weights: the starting model, the rows, the settings
    (not ``quiet``, ``report_to``, ``save_steps``, ``logging_steps``), the seed, the process count."""
    import dataclasses
    import hashlib

    from dicekit.config import to_dict

    train_keys = {f.name for f in dataclasses.fields(TrainConfig)} - set(_NOT_IN_IDENTITY)
    settings = {k: v for k, v in to_dict(cfg).items() if k in train_keys}
    blob = json.dumps([policy, settings, seed, world_size, ds_columns], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def resume_checkpoint(trainer_dir: Path, identity: str) -> str | None:
    """The latest complete checkpoint (its ``trainer_state.json``, written last, parses) of the training
    ``identity`` in ``trainer_dir``, or None. Everything there from another training, and incomplete
    checkpoints, is deleted; the folder is stamped with ``identity`` (main process only)."""
    from dicekit.round import dist

    stamp = trainer_dir / f"dicekit_training-{identity[:16]}.json"
    if not dist.is_main():
        dist.wait_for([stamp], "the training folder's stamp from rank 0")
    else:
        if trainer_dir.is_dir() and not stamp.is_file():
            shutil.rmtree(trainer_dir)
        trainer_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_json(stamp, {"identity": identity})
    done = []
    for d in trainer_dir.glob("checkpoint-*"):
        try:
            step = json.loads((d / "trainer_state.json").read_text())["global_step"]
        except (OSError, ValueError, KeyError, TypeError):
            if dist.is_main():
                shutil.rmtree(d, ignore_errors=True)
            continue
        done.append((int(step), d))
    return str(max(done)[1]) if done else None


def _trim_log(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (the checkpoint resumed from): later ones are redone."""
    if path.is_file():
        rows = [x for x in path.read_text().splitlines() if x.strip() and json.loads(x).get("step", 0) <= step]
        rundir.write_text(path, "".join(r + "\n" for r in rows))


def _logged_loss_sum(path: Path) -> float:
    """The summed per-step losses of a (trimmed) training log: each logged loss is the mean over the
    steps since the previous log line, so it counts that many times."""
    total, last = 0.0, 0
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "loss" in row and "step" in row:
                total += float(row["loss"]) * (int(row["step"]) - last)
                last = int(row["step"])
    return total


def train_dpo(policy: str, rows: pd.DataFrame, out_dir: str | Path, cfg: TrainConfig, log_path: str | Path,
              work_dir: str | Path, *, seed: int) -> dict:
    """Train π_t from ``policy`` on ``rows`` (TRAIN_COLUMNS) with the settings ``cfg`` and the trainer's
    ``seed`` (shuffling, dropout), and save it to ``out_dir`` atomically.

    ``train_log.jsonl`` gets one JSON object per logging step. Returns a summary of the run."""
    import datasets

    missing = [c for c in TRAIN_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"training rows lack {missing}")
    if len(rows) == 0:
        raise ValueError("no training pairs")
    from dicekit.round import dist

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    columns = {
        "prompt_ids": [list(map(int, x)) for x in rows["prompt_ids"]],
        "chosen_ids": [list(map(int, x)) for x in rows["chosen_ids"]],
        "rejected_ids": [list(map(int, x)) for x in rows["rejected_ids"]],
        "ref_chosen_logps": rows["ref_chosen_logps"].astype(float).tolist(),
        "ref_rejected_logps": rows["ref_rejected_logps"].astype(float).tolist(),
    }
    tmp_log = work_dir / "train_log.jsonl"
    resume = None
    if cfg.save_steps:
        identity = training_identity(policy, columns, cfg, seed, dist.world_size())
        resume = resume_checkpoint(work_dir / "trainer", identity)
    if resume is None:
        tmp_log.unlink(missing_ok=True)
    elif dist.is_main():
        _trim_log(tmp_log, int(Path(resume).name.split("-")[-1]))
    loss_before = _logged_loss_sum(tmp_log) if resume and dist.is_main() else 0.0
    ds = datasets.Dataset.from_dict(columns)

    # the training arguments first: under DeepSpeed ZeRO-3 they must exist before the model is loaded
    # for the weights to be partitioned at load time
    args = dpo_args(cfg, str(work_dir / "trainer"), seed=seed, world_size=dist.world_size())
    # fp32 master weights always; train_dtype bfloat16 = mixed precision (autocast), so updates of
    # lr ≈ 5e-7 are not rounded away as they would be on bf16 weights
    model, tok = load_model(policy, dtype="float32", device=None)  # the trainer places (or shards) it
    trainer = _trainer_class()(model=model, args=args, train_dataset=ds, processing_class=tok,
                               callbacks=[jsonl_log_callback(tmp_log)])
    _quiet_trainer(trainer, cfg.quiet)
    _check_fsdp_saves_full_state(trainer)
    staged = work_dir / "model"
    if dist.is_main() and staged.exists():  # left by an interrupted attempt
        shutil.rmtree(staged)
    if resume and not cfg.quiet and dist.is_main():
        from dicekit.progress import say

        say(f"training resumes from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)
    # every rank takes part in saving (ZeRO-3 / FSDP gather the weights); rank 0 renames into place
    _save_model(trainer, staged)
    trainer.accelerator.wait_for_everyone()
    if not dist.is_main():
        return {}
    if not any((staged / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")):
        from dicekit.errors import UserError

        raise UserError(f"{staged}: the trained model was not saved as safetensors (under FSDP, set "
                        "fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config)")
    tok.save_pretrained(str(staged))
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staged, out_dir)
    shutil.move(str(tmp_log), str(log_path)) if tmp_log.exists() else rundir.write_text(log_path, "")
    steps = trainer.state.global_step
    loss = result.training_loss
    if resume and not math.isnan(loss):  # the trainer averages the resumed steps' losses over all steps
        loss = (loss * steps + loss_before) / steps
    return {
        "train_steps": steps,
        "train_pairs": len(rows),
        "train_epochs": float(trainer.state.epoch or 0.0),
        "train_loss": float(loss) if not math.isnan(loss) else None,
    }
