"""A scalar reward model trained on the offline pairs, through TRL's RewardTrainer, and its scores.

The paper's Table 5 compares DICE's implicit reward with a scalar reward model trained on the same
seed data (the paper used OpenRLHF; here TRL's RewardTrainer, Bradley–Terry loss
−log σ(r(x, y_c) − r(x, y_r))). The model is ``AutoModelForSequenceClassification`` (one label)
initialised from a causal LM folder (its LM head unused, a fresh scalar head on the last token).

Token IDs: the trainer gets pre-tokenised rows ``chosen_ids``/``rejected_ids`` = templated prompt +
reply + end-of-turn, built exactly as the implicit-reward scorer builds them
(dicekit.evals.reward_scoring.token_ids), so TRL never re-tokenises text (docs/method-notes.md: its text path
appends ``tokenizer.eos_token``, not necessarily the model's end-of-turn). ``rm_scores`` reads the
scalar at the same last token. The end-of-turn id is saved with the model (``dicekit_rm.json``).
"""

from __future__ import annotations

import json
import math
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.errors import UserError

META = "dicekit_rm.json"


@dataclass(frozen=True)
class RMConfig:
    learning_rate: float = 1e-5
    num_epochs: float = 1.0
    max_steps: int | None = None
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int | None = None  # pairs with a longer side are dropped (None: keep all)
    seed: int = 0
    logging_steps: int = 1
    quiet: bool = False


def _gen_config(spec: str):
    """Something with a ``generation_config`` (the stop tokens) for a model folder, without loading weights."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    try:
        return SimpleNamespace(generation_config=GenerationConfig.from_pretrained(spec))
    except OSError:
        return SimpleNamespace(generation_config=None)


def _eot(tok, spec: str) -> int:
    from dicekit.models import end_of_turn_id, stop_token_ids

    return end_of_turn_id(tok, stop_token_ids(_gen_config(spec), tok))


@contextmanager
def _quiet_loading():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def train_rm(model_spec: str, pairs: pd.DataFrame, out_dir: str | Path, cfg: RMConfig = RMConfig()) -> dict:
    """Train a scalar RM from ``model_spec`` on ``pairs`` (prompt/chosen/rejected, a load_pairs frame);
    save it (safetensors + tokenizer + ``dicekit_rm.json``) to ``out_dir`` atomically, with the
    trainer's log as ``out_dir/train_log.jsonl``. Returns a summary."""
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from dicekit.evals.reward_scoring import token_ids
    from dicekit.models import _source, load_tokenizer

    if len(pairs) == 0:
        raise UserError("no training pairs for the reward model")
    tok = load_tokenizer(model_spec)
    eot = _eot(tok, model_spec)
    p, c, r = token_ids(tok, None, pairs, eot=eot)
    ds = datasets.Dataset.from_dict({"chosen_ids": [a + b for a, b in zip(p, c)],
                                     "rejected_ids": [a + b for a, b in zip(p, r)]})
    src, kw = _source(model_spec)
    torch.manual_seed(cfg.seed)
    with _quiet_loading():  # the LM head unused and the scalar head new: expected, not worth a report
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, dtype=torch.float32, **kw)
    model.config.pad_token_id = tok.pad_token_id
    out_dir = Path(out_dir)
    work = out_dir.parent / f".{out_dir.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "train_log.jsonl"
    args = RewardConfig(
        output_dir=str(work / "trainer"), learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1, per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_length=cfg.max_length,
        logging_steps=cfg.logging_steps, report_to="none", save_strategy="no", bf16=False,
        use_cpu=not torch.cuda.is_available(), seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=cfg.quiet,
        center_rewards_coefficient=None,
    )
    from dicekit.round.train import jsonl_log_callback

    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                            callbacks=[jsonl_log_callback(log)])
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepBar(ProgressCallback):  # a step bar, but the per-step dicts go to train_log.jsonl only
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not cfg.quiet:
        trainer.add_callback(StepBar())
    result = trainer.train()
    summary = {"base_model": model_spec, "eot_id": int(eot), "train_pairs": int(len(ds)),
               "train_steps": int(trainer.state.global_step), "config": asdict(cfg),
               "train_loss": None if math.isnan(result.training_loss) else float(result.training_loss),
               **rundir.provenance()}
    with rundir.atomic_path(out_dir) as tmp:
        trainer.model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / META).write_text(json.dumps(summary, indent=2) + "\n")
        if log.exists():
            shutil.move(str(log), str(tmp / "train_log.jsonl"))
    shutil.rmtree(work, ignore_errors=True)
    return summary


def load_rm(rm_dir: str | Path, dtype: str = "float32"):
    """(model, tokenizer, end-of-turn id) of a reward model saved by :func:`train_rm`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from dicekit.models import load_tokenizer

    rm_dir = Path(rm_dir)
    if not (rm_dir / "config.json").is_file():
        raise UserError(f"{rm_dir}: not a reward-model folder (no config.json); train one with `dicekit train-rm`")
    tok = load_tokenizer(str(rm_dir))
    meta = json.loads((rm_dir / META).read_text()) if (rm_dir / META).is_file() else {}
    eot = meta.get("eot_id")
    model = AutoModelForSequenceClassification.from_pretrained(str(rm_dir), dtype=getattr(torch, dtype))
    if model.config.num_labels != 1:
        raise UserError(f"{rm_dir}: a reward model has one output, this one has {model.config.num_labels}")
    model.eval()
    return model, tok, (int(eot) if eot is not None else _eot(tok, str(rm_dir)))


def rm_scores(model, pad_id: int, sequences: list[list[int]], batch_size: int = 16) -> np.ndarray:
    """Scalar reward of each full token sequence (prompt + reply), shape (N,), float64."""
    import torch

    out = np.zeros(len(sequences), dtype=np.float64)
    order = np.argsort([-len(s) for s in sequences], kind="stable")
    device = next(model.parameters()).device
    with torch.no_grad():
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            width = max(len(sequences[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for b, i in enumerate(idx):
                ids[b, :len(sequences[i])] = torch.tensor(list(sequences[i]))
                mask[b, :len(sequences[i])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            out[idx] = logits[:, 0].double().cpu().numpy()
    return out


def score_pairs_rm(rm_dir: str | Path, pairs: pd.DataFrame, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(chosen scores, rejected scores) of ``pairs`` under a saved reward model. Pairs carrying token
    IDs are scored on them (the reward model must then share the tokenizer that made them)."""
    from dicekit.evals.reward_scoring import token_ids

    model, tok, eot = load_rm(rm_dir)
    p, c, r = token_ids(tok, None, pairs, eot=eot)
    s = rm_scores(model, tok.pad_token_id, [a + b for a, b in zip(p + p, c + r)], batch_size)
    return s[:len(pairs)], s[len(pairs):]
