"""The DPO stage through TRL: exact token IDs in, dicekit's implicit reward = TRL's logged rewards."""

import json

import numpy as np
import pandas as pd
import pytest

from dicekit.models import load_model, prompt_ids
from dicekit.config import RoundConfig, TrainConfig, build
from dicekit.core.objectives import implicit_reward
from dicekit.round.score import score_sequences
from dicekit.round.train import dpo_args, train_dpo


def test_trl_logged_rewards_equal_dicekit_implicit_reward(tiny_world, tmp_path):
    """Policy π_0 is trained against reference log-probs scored under π_{-1}: at the first step TRL
    logs β·mean(logp_π0 − ref) for chosen and rejected, which must equal dicekit's implicit reward
    computed by the round's scorer on the same IDs."""
    pol, tok = load_model(tiny_world["policy"])
    ref, _ = load_model(tiny_world["reference"])
    end = tok.eos_token_id
    qs = ["red cat", "one two", "the sun is big", "fish"]
    p = [prompt_ids(tok, q) for q in qs]
    c = [tok(x, add_special_tokens=False)["input_ids"] + [end] for x in ("blue dog", "three", "yes a star", "no")]
    r = [tok(x, add_special_tokens=False)["input_ids"] + [end] for x in ("a", "four five", "moon", "the tree rock")]
    rows = pd.DataFrame({"prompt_ids": p, "chosen_ids": c, "rejected_ids": r,
                         "ref_chosen_logps": score_sequences(ref, p, c), "ref_rejected_logps": score_sequences(ref, p, r)})
    beta = 0.1
    want_c = beta * implicit_reward(score_sequences(pol, p, c), rows["ref_chosen_logps"].to_numpy()).mean()
    want_r = beta * implicit_reward(score_sequences(pol, p, r), rows["ref_rejected_logps"].to_numpy()).mean()
    cfg = TrainConfig(beta=beta, learning_rate=1e-3, global_batch_size=4, per_device_batch_size=4, max_steps=2, quiet=True)
    summary = train_dpo(tiny_world["policy"], rows, tmp_path / "model", cfg, tmp_path / "log.jsonl", tmp_path / "work",
                        seed=0)
    first = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert abs(first["rewards/chosen"] - want_c) < 1e-4
    assert abs(first["rewards/rejected"] - want_r) < 1e-4
    assert abs(want_c) > 1e-3  # the parity is not 0 == 0
    assert summary["train_steps"] == 2 and (tmp_path / "model" / "model.safetensors").exists()
    # the trained model moved
    new, _ = load_model(str(tmp_path / "model"))
    assert not np.allclose(score_sequences(new, p, c), score_sequences(pol, p, c))


def test_dpo_args_batch_and_warmup():
    args = dpo_args(TrainConfig(global_batch_size=32, per_device_batch_size=4, warmup_steps=0), "/tmp/x", seed=0)
    assert args.gradient_accumulation_steps == 8 and args.lr_scheduler_type.value == "constant"
    args = dpo_args(TrainConfig(warmup_steps=50), "/tmp/x", seed=0)
    assert args.lr_scheduler_type.value == "constant_with_warmup" and args.warmup_steps == 50
    assert args.precompute_ref_log_probs and args.max_length is None


def test_round_yaml_keys_reach_dpo_config():
    """A flat round config is the DPO stage's TrainConfig: its keys arrive in TRL's DPOConfig as read,
    and the trainer's seed is the one the round passes (seed + t)."""
    values = {"run_dir": "r", "policy": "p", "reference": "q", "prompts": "x", "replay_ratio": 0.0,
              "beta": 0.37, "learning_rate": 2e-6, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5],
              "global_batch_size": 24, "per_device_batch_size": 2, "max_steps": 7, "logging_steps": 3}
    cfg = build(RoundConfig, values, "round.yaml")
    assert isinstance(cfg, TrainConfig)
    args = dpo_args(cfg, "/tmp/x", seed=cfg.seed + 2, world_size=3)
    assert args.beta == 0.37 and args.learning_rate == 2e-6 and args.max_steps == 7 and args.logging_steps == 3
    assert list(args.loss_type) == ["sigmoid", "sft"] and list(args.loss_weights) == [1.0, 0.5]
    assert args.per_device_train_batch_size == 2 and args.gradient_accumulation_steps == 4  # 24 // (2 × 3)
    assert args.seed == args.data_seed == 44


def test_accumulation_steps_worked_by_hand():
    cfg = TrainConfig(global_batch_size=32, per_device_batch_size=4)
    assert [cfg.accumulation_steps(n) for n in (1, 3, 8, 16)] == [8, 2, 1, 1]
    assert [cfg.pairs_per_step(n) for n in (1, 3, 8, 16)] == [32, 24, 32, 64]


def test_training_keys_are_validated_on_their_own():
    from dicekit.errors import UserError

    with pytest.raises(UserError, match="key 'beta': must be > 0"):
        build(TrainConfig, {"beta": 0}, "train.yaml")
    with pytest.raises(UserError, match="unknown key 'seed'"):
        build(TrainConfig, {"seed": 1}, "train.yaml")  # the trainer's seed is the caller's (seed + t)


def test_fsdp_that_would_save_shards_is_refused_before_training():
    from types import SimpleNamespace

    from dicekit.errors import UserError
    from dicekit.round.train import _check_fsdp_saves_full_state

    def trainer(kind):
        plugin = None if kind is None else SimpleNamespace(state_dict_type=f"StateDictType.{kind}")
        return SimpleNamespace(accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin)))

    _check_fsdp_saves_full_state(trainer(None))  # not FSDP
    _check_fsdp_saves_full_state(trainer("FULL_STATE_DICT"))
    with pytest.raises(UserError, match="FULL_STATE_DICT"):
        _check_fsdp_saves_full_state(trainer("SHARDED_STATE_DICT"))


TRAIN_SCRIPT = """
import json, sys
import pandas as pd
from dicekit.config import TrainConfig
from dicekit.round.train import train_dpo
a = json.loads(sys.argv[1])
print(json.dumps(train_dpo(a["policy"], pd.read_parquet(a["rows"]), a["out"], TrainConfig(**a["cfg"]), a["log"],
                           a["work"], seed=0)))
"""


def _tiny_pairs(tiny_world, path):
    pol, tok = load_model(tiny_world["policy"])
    end = tok.eos_token_id
    words = ["red cat", "one two", "the sun is big", "fish", "a b c", "moon", "tree rock", "blue dog"]
    p = [prompt_ids(tok, q) for q in words]
    c = [tok(x, add_special_tokens=False)["input_ids"] + [end] for x in words[1:] + words[:1]]
    r = [tok(x, add_special_tokens=False)["input_ids"] + [end] for x in words[2:] + words[:2]]
    ref = score_sequences(pol, p, c), score_sequences(pol, p, r)
    pd.DataFrame({"prompt_ids": p, "chosen_ids": c, "rejected_ids": r, "ref_chosen_logps": ref[0] - 0.1,
                  "ref_rejected_logps": ref[1] + 0.1}).to_parquet(path)
    return path


def _train(tiny_world, rows, folder, cfg, kill_at=None):
    import os
    import subprocess
    import sys

    args = dict(policy=tiny_world["policy"], rows=str(rows), out=str(folder / "model"), log=str(folder / "log.jsonl"),
                work=str(folder / "work"), cfg=cfg)
    env = {k: v for k, v in os.environ.items() if k != "DICEKIT_KILL_AT"}
    if kill_at:
        env["DICEKIT_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, json.dumps(args)], capture_output=True, text=True, env=env)


def test_training_killed_after_a_checkpoint_resumes_to_the_same_weights(tiny_world, tmp_path):
    """save_steps: a training SIGKILLed right after its step-4 checkpoint, run again, resumes there
    and ends with the bytes of an uninterrupted training, its log holding each step once with the
    same values; a different training in that work folder does not resume from its checkpoint."""
    rows = _tiny_pairs(tiny_world, tmp_path / "rows.parquet")
    cfg = dict(beta=0.1, learning_rate=5e-3, global_batch_size=2, per_device_batch_size=2, max_steps=6, save_steps=2,
               num_epochs=1.0)
    ref = _train(tiny_world, rows, tmp_path / "ref", cfg)
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed = _train(tiny_world, rows, tmp_path / "run", cfg, kill_at="train:4")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [d.name for d in (tmp_path / "run" / "work" / "trainer").glob("checkpoint-*")] == ["checkpoint-4"]
    assert not (tmp_path / "run" / "model").exists()
    again = _train(tiny_world, rows, tmp_path / "run", cfg)
    assert again.returncode == 0 and "training resumes from" in again.stderr and "checkpoint-4" in again.stderr
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "ref" / "model" / "model.safetensors").read_bytes()
    logged = lambda d: [json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()]  # noqa: E731
    steps = lambda d: [x for x in logged(d) if "loss" in x]  # noqa: E731 (per-step rows, not the summary)
    got, want = steps(tmp_path / "run"), steps(tmp_path / "ref")
    assert [x["step"] for x in got] == [1, 2, 3, 4, 5, 6] == [x["step"] for x in want]
    assert [x["loss"] for x in got] == [x["loss"] for x in want]
    # the summary's mean loss covers all 6 steps, not only the 2 run after the resume
    summary = lambda p: json.loads(p.stdout.strip().splitlines()[-1])  # noqa: E731
    assert summary(again)["train_loss"] == pytest.approx(summary(ref)["train_loss"], rel=1e-6)
    assert summary(ref)["train_loss"] == pytest.approx(sum(x["loss"] for x in want) / 6, rel=1e-6)
    # the ref weights moved: the equality above is not that of two untrained models
    assert len({x["loss"] for x in want}) > 1
    # another training (another learning rate) in the same work folder starts from step 1
    other = _train(tiny_world, rows, tmp_path / "ref", {**cfg, "learning_rate": 1e-3}, kill_at="train:2")
    assert other.returncode == -9 and "training resumes" not in other.stderr
    assert [d.name for d in (tmp_path / "ref" / "work" / "trainer").glob("checkpoint-*")] == ["checkpoint-2"]


def test_save_steps_is_validated():
    from dicekit.errors import UserError

    with pytest.raises(UserError, match="key 'save_steps': must be >= 1"):
        build(TrainConfig, {"save_steps": 0}, "train.yaml")
    assert dpo_args(TrainConfig(save_steps=5), "/tmp/x", seed=0).save_strategy.value == "steps"
    assert dpo_args(TrainConfig(), "/tmp/x", seed=0).save_strategy.value == "no"
