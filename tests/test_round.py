"""A whole DICE round on the tiny model: the run folder contract, round 2, resume after SIGKILL,
and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dicekit.config import RoundConfig, build
from dicekit.round.run import run_round

SAMPLE_COLS = ["prompt_id", "sample_id", "prompt", "response", "prompt_ids", "response_ids", "n_tokens", "n_chars",
               "finish_reason", "logp_policy", "logp_ref", "reward", "valid"]
PAIR_COLS = ["prompt_id", "prompt", "chosen", "rejected", "source", "chosen_sample_id", "rejected_sample_id",
             "chosen_reward_lr", "rejected_reward_lr", "alpha"]
CONFIG_KEYS = ["round", "policy", "reference", "seed", "samples_per_prompt", "beta", "length_unit", "alpha",
               "replay_ratio", "dicekit_version", "git_sha"]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dicekit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=Path(__file__).resolve().parent.parent)


def write_config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_round_writes_the_contract(round_values):
    cfg = build(RoundConfig, round_values, "test")
    rdir = run_round(cfg)
    samples = pd.read_parquet(rdir / "samples.parquet")
    pairs = pd.read_parquet(rdir / "pairs.parquet")
    assert set(SAMPLE_COLS) <= set(samples.columns) and set(PAIR_COLS) <= set(pairs.columns)
    assert len(samples) == 12 * 4 and sorted(samples.sample_id.unique()) == [0, 1, 2, 3]
    v = samples[samples.valid]
    assert np.allclose(v.reward, v.logp_policy - v.logp_ref)
    assert (samples.n_chars == samples.response.str.strip().str.len()).all()  # as the official len(text.strip())
    assert samples.loc[~samples.valid, "logp_policy"].isna().all()
    conf = yaml.safe_load((rdir / "config.yaml").read_text())
    assert all(k in conf for k in CONFIG_KEYS) and conf["round"] == 1
    sweep = pd.read_csv(rdir / "alpha_sweep.csv")
    assert list(sweep.columns) == ["alpha", "mean_len_diff", "n_pairs"] and len(sweep) == 1000
    assert conf["alpha"] == sweep.alpha[sweep.mean_len_diff.abs().idxmin()]
    gen, off = pairs[pairs.source == "generated"], pairs[pairs.source == "offline"]
    assert len(gen) > 0 and len(off) == len(gen)  # γ = 0.5
    assert not set(off.prompt) & set(gen.prompt)
    assert off.chosen_sample_id.isna().all() and gen.chosen_sample_id.notna().all()
    # chosen = argmax, rejected = argmin of reward_lr at α*
    a = conf["alpha"]
    for row in gen.itertuples():
        grp = v[v.prompt_id == row.prompt_id]
        lr = grp.reward - a * grp.n_chars
        assert row.chosen_reward_lr == pytest.approx(lr.max()) and row.rejected_reward_lr == pytest.approx(lr.min())
        assert row.chosen_reward_lr > row.rejected_reward_lr
    # generated pairs train on the exact sampled IDs with π_{t-1}'s logp as reference
    s = samples.set_index(["prompt_id", "sample_id"])
    for row in gen.itertuples():
        src = s.loc[(row.prompt_id, row.chosen_sample_id)]
        assert list(row.chosen_ids) == list(src.response_ids) and row.ref_chosen_logps == src.logp_policy
    log = [json.loads(x) for x in (rdir / "train_log.jsonl").read_text().splitlines()]
    assert sum("loss" in x for x in log) == 3
    metrics = json.loads((rdir / "metrics.json").read_text())
    assert metrics["n_pairs_generated"] == len(gen) and metrics["alpha"] == a
    assert (rdir / "model" / "model.safetensors").exists() and not (rdir / ".work").exists()

    # round 2: π_1 samples, reward of π_1 against π_0
    rdir2 = run_round(cfg)
    conf2 = yaml.safe_load((rdir2 / "config.yaml").read_text())
    # paths inside the run folder are stored relative to it, paths outside it absolute
    assert conf2["round"] == 2 and conf2["policy"] == "./round_1/model"
    assert conf2["reference"] == str(Path(cfg.policy).resolve())
    assert (rdir2 / "metrics.json").exists()


def test_gamma_zero_and_one(round_values):
    only_gen = run_round(build(RoundConfig, {**round_values, "replay_ratio": 0.0, "offline_data": None}, "t"))
    assert set(pd.read_parquet(only_gen / "pairs.parquet").source) == {"generated"}
    vals = {**round_values, "replay_ratio": 1.0, "run_dir": round_values["run_dir"] + "-offline", "max_pairs": 8}
    only_off = run_round(build(RoundConfig, vals, "t"))
    p = pd.read_parquet(only_off / "pairs.parquet")
    assert set(p.source) == {"offline"} and len(p) == 8


def test_replay_counts_official(round_values):
    """30 offline pairs, γ = 0.75: official n_gen = min(int(30·0.25), G) = min(7, G) generated pairs and
    int(0.75·n_gen/0.25) = 3·n_gen offline, where G is the number of prompts that gave a pair."""
    from dicekit.core import pairs as P

    vals = {**round_values, "replay_ratio": 0.75, "replay_counts": "official", "max_steps": 1}
    rdir = run_round(build(RoundConfig, vals, "t"))
    samples = pd.read_parquet(rdir / "samples.parquet")
    alpha = yaml.safe_load((rdir / "config.yaml").read_text())["alpha"]
    valid, groups = P.pack_valid(samples, "chars")
    n_all = int(P.select(groups, alpha).keep.sum())
    assert n_all >= 7  # the tiny world's 12 prompts give enough pairs for the cap to bind
    pairs = pd.read_parquet(rdir / "pairs.parquet")
    assert (pairs.source == "generated").sum() == 7 and (pairs.source == "offline").sum() == 21


def test_resume_after_sigkill_equals_uninterrupted(round_values, tmp_path):
    base = {**round_values, "max_steps": 1, "quiet": True}
    ref_cfg = write_config(tmp_path / "ref.yaml", {**base, "run_dir": str(tmp_path / "ref")})
    assert cli("run-round", "--config", str(ref_cfg)).returncode == 0
    cfg = write_config(tmp_path / "kill.yaml", {**base, "run_dir": str(tmp_path / "killed")})
    for point in ("gen:1", "score_ref:0"):  # mid-generation, then mid-scoring
        r = cli("run-round", "--config", str(cfg), env={"DICEKIT_KILL_AT": point})
        assert r.returncode == -9, (point, r.stderr[-500:])
    assert not (tmp_path / "killed" / "round_1" / "samples.parquet").exists()
    assert cli("run-round", "--config", str(cfg)).returncode == 0
    for name in ("samples.parquet", "pairs.parquet"):
        a = pd.read_parquet(tmp_path / "ref" / "round_1" / name)
        b = pd.read_parquet(tmp_path / "killed" / "round_1" / name)
        pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "killed" / "round_1" / "alpha_sweep.csv").read_text() == \
        (tmp_path / "ref" / "round_1" / "alpha_sweep.csv").read_text()
    r = cli("run-round", "--config", str(cfg), "--round", "1")
    assert r.returncode == 0 and "nothing to do" in r.stderr


def test_policy_logp_from_the_hf_sampler_equals_scoring(round_values, tmp_path, monkeypatch):
    """With ``policy_logp_from_sampler`` the HF round skips the forward under π_{t-1}: logp_policy is
    the sampler's own log-probs, equal to the scorer's, and the round builds the same pairs."""
    import dicekit.round.score

    scored_models = []
    real = dicekit.round.score.score_sequences

    def spy(model, *a, **k):
        scored_models.append(model.config._name_or_path)
        return real(model, *a, **k)

    monkeypatch.setattr(dicekit.round.score, "score_sequences", spy)
    base = {**round_values, "max_steps": 1, "replay_ratio": 0.0, "offline_data": None}
    scored = run_round(build(RoundConfig, {**base, "run_dir": str(tmp_path / "scored")}, "t"))
    assert round_values["policy"] in scored_models  # the spy sees the scoring stage
    scored_models.clear()
    reused = run_round(build(RoundConfig, {**base, "run_dir": str(tmp_path / "reused"),
                                           "policy_logp_from_sampler": True}, "t"))
    assert scored_models and round_values["policy"] not in scored_models  # only π_{t-2} was scored
    a, b = (pd.read_parquet(d / "samples.parquet") for d in (scored, reused))
    assert [list(x) for x in a.response_ids] == [list(x) for x in b.response_ids]
    v = a.valid.to_numpy()
    assert v.sum() > 10 and np.abs(a.logp_policy[v] - b.logp_policy[v]).max() < 1e-4
    assert np.array_equal(b.logp_policy[v], b.logp_sampler[v])
    assert not np.array_equal(a.logp_policy[v], a.logp_sampler[v])  # scored: equal only up to rounding
    pa, pb = (pd.read_parquet(d / "pairs.parquet") for d in (scored, reused))
    cols = ["prompt_id", "source", "chosen_sample_id", "rejected_sample_id"]
    pd.testing.assert_frame_equal(pa[cols], pb[cols])


def test_bf16_sampling_keeps_fp32_scores(round_values, tmp_path):
    """``generate_dtype: bfloat16`` samples from a bf16 copy of π_{t-1}; logp_policy / logp_ref are
    still the fp32 scorer's on the sampled IDs, while the sampler's own bf16 log-probs differ."""
    from dicekit.models import load_model
    from dicekit.round.score import score_sequences

    base = {**round_values, "max_steps": 1, "replay_ratio": 0.0, "offline_data": None}
    rdir = run_round(build(RoundConfig, {**base, "run_dir": str(tmp_path / "bf16"), "generate_dtype": "bfloat16"}, "t"))
    s = pd.read_parquet(rdir / "samples.parquet")
    v = s[s.valid]
    model, _ = load_model(round_values["policy"])
    want = score_sequences(model, list(v.prompt_ids), list(v.response_ids))
    assert len(v) > 10 and np.abs(v.logp_policy.to_numpy() - want).max() < 1e-4
    assert np.abs(v.logp_sampler.to_numpy() - want).max() > 1e-3  # bf16 logits: not the scorer's numbers


def _bad(tmp_path, round_values, capsys, **change):
    """Run the CLI in-process (same code path as the console script) and capture its exit and stderr."""
    from dicekit.cli import main

    vals = {**round_values, "run_dir": str(tmp_path / "bad"), **change}
    capsys.readouterr()
    code = main(["run-round", "--config", str(write_config(tmp_path / "bad.yaml", vals))])
    return subprocess.CompletedProcess([], code, "", capsys.readouterr().err)


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, round_values, tiny_world, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\n{"prompt": \n')
    nocol = tmp_path / "nocol.jsonl"
    nocol.write_text('{"text": "a"}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((Path(tiny_world["policy"]) / "config.json").read_text())
    cases = [
        (dict(prompts=str(broken)), "broken.jsonl:2: malformed JSON"),
        (dict(prompts=str(nocol)), "nocol.jsonl:1: missing field 'prompt'"),
        (dict(prompts=str(empty)), "no prompts"),
        (dict(offline_data=str(nocol)), "nocol.jsonl:1: missing field 'chosen'"),
        (dict(policy=str(bare)), "no tokenizer"),
        (dict(beta="high"), "key 'beta': expected a number"),
        (dict(temprature=0.7), "unknown key 'temprature'"),
        (dict(filter_top_fraction=1.5), "key 'filter_top_fraction': must be in (0, 1]"),
        (dict(gate=True, health=False), "key 'gate': needs health: true"),
        (dict(gate_signal="oracle"), "key 'gate_signal': must be one of"),
        (dict(reward_mode="total"), "key 'reward_mode': must be one of"),
        (dict(generate_dtype="bfloat16", policy_logp_from_sampler=True), "key 'policy_logp_from_sampler': needs generate_dtype"),
    ]
    for change, message in cases:
        r = _bad(tmp_path, round_values, capsys, **change)
        assert r.returncode == 2, (change, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (change, r.stderr)
        assert not (tmp_path / "bad").exists()
    r = cli("run-round", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_help_of_every_command_does_not_import_torch():
    from dicekit.cli import COMMANDS

    for words in [()] + list(COMMANDS):
        args = list(words) + ["--help"]
        code = ("import sys\nfrom dicekit.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')" % (args,))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0 and "NOTORCH" in r.stdout and "usage" in r.stdout.lower(), (args, r.stderr[-500:])


def test_monitor_and_stabilisers_record_what_they_did(round_values, tmp_path):
    """Round 1 with the gate forced to fall back; round 2 with the previous reward scored, the
    consistency and top-margin filters and the cumulative reward: counts add up, records match."""
    from dicekit.core.pairs import consistent_pairs

    vals = {**round_values, "max_steps": 1, "run_dir": str(tmp_path / "stab"), "gate": True, "gate_threshold": 1.01,
            "health_max_pairs": 10}
    r1 = run_round(build(RoundConfig, vals, "t"), 1)
    m1 = json.loads((r1 / "metrics.json").read_text())
    h = m1["health"]
    assert h["heldout_accuracy"]["n"] == 10 and 0 <= h["heldout_accuracy"]["value"] <= 1
    assert h["consistency"]["value"] is None and "round 1" in h["consistency"]["reason"]
    assert h["variant_agreement"]["n"] > 0
    gate = m1["stabilisers"]["gate"]
    assert gate["fallback"] is True and gate["value"] == h["heldout_accuracy"]["value"]
    assert m1["stabilisers"]["replay_ratio"] == 1.0 and m1["n_pairs_generated"] == 0 and m1["n_pairs_offline"] > 0
    assert not (r1 / "previous_rewards.parquet").exists()

    vals2 = {**vals, "gate": False, "filter_consistent": True, "filter_top_fraction": 0.5, "reward_mode": "cumulative"}
    r2 = run_round(build(RoundConfig, vals2, "t"), 2)
    m2 = json.loads((r2 / "metrics.json").read_text())
    s = m2["stabilisers"]
    prev = pd.read_parquet(r2 / "previous_rewards.parquet")
    samples = pd.read_parquet(r2 / "samples.parquet")
    v = samples[samples.valid].merge(prev, on=["prompt_id", "sample_id"])
    assert len(v) == samples.valid.sum()
    # round 2: π_{t-3} = π_{-1} serves both rewards; cumulative = log π_1 − log π_{-1}
    assert np.allclose(v.reward_previous, v.logp_ref - v.logp_prev_ref)
    assert np.allclose(v.reward_cumulative, v.logp_policy - v.logp_prev_ref) and np.allclose(v.logp_base, v.logp_prev_ref)
    fc, ft = s["filter_consistent"], s["filter_top_fraction"]
    assert fc["kept"] + fc["dropped"] == s["n_generated_pairs_selected"]
    assert ft["kept"] + ft["dropped"] == fc["kept"] and ft["kept"] == int(np.ceil(0.5 * fc["kept"]))
    assert s["n_generated_pairs_kept"] == ft["kept"] == m2["n_pairs_generated"]
    gen = pd.read_parquet(r2 / "pairs.parquet").query("source == 'generated'")
    by = prev.set_index(["prompt_id", "sample_id"])
    c = by.loc[list(zip(gen.prompt_id, gen.chosen_sample_id.astype(int))), "reward_previous"].to_numpy()
    r = by.loc[list(zip(gen.prompt_id, gen.rejected_sample_id.astype(int))), "reward_previous"].to_numpy()
    assert consistent_pairs(c, r).all()  # every kept pair agrees with the previous reward
    cum = by.loc[list(zip(gen.prompt_id, gen.chosen_sample_id.astype(int))), "reward_cumulative"].to_numpy()
    assert np.allclose(gen.chosen_reward.to_numpy(float), cum)  # pairs were ranked by the cumulative reward
    assert m2["health"]["consistency"]["value"] is not None and "gate" not in s


def test_resume_with_stabilisers_equals_uninterrupted(round_values, tmp_path):
    base = {**round_values, "max_steps": 1, "quiet": True, "filter_consistent": True, "reward_mode": "cumulative",
            "health_previous_reward": True, "gate": True, "gate_signal": "consistency", "gate_threshold": 0.0,
            "health_max_pairs": 8}
    ref_cfg = write_config(tmp_path / "ref.yaml", {**base, "run_dir": str(tmp_path / "ref")})
    for _ in range(2):
        assert cli("run-round", "--config", str(ref_cfg)).returncode == 0
    cfg = write_config(tmp_path / "kill.yaml", {**base, "run_dir": str(tmp_path / "killed")})
    assert cli("run-round", "--config", str(cfg)).returncode == 0
    r = cli("run-round", "--config", str(cfg), env={"DICEKIT_KILL_AT": "score_logp_prev_ref:0"})
    assert r.returncode == -9, r.stderr[-500:]
    assert not (tmp_path / "killed" / "round_2" / "previous_rewards.parquet").exists()
    assert cli("run-round", "--config", str(cfg)).returncode == 0
    for name in ("samples.parquet", "previous_rewards.parquet", "pairs.parquet"):
        a = pd.read_parquet(tmp_path / "ref" / "round_2" / name)
        b = pd.read_parquet(tmp_path / "killed" / "round_2" / name)
        pd.testing.assert_frame_equal(a, b)
    ma, mb = (json.loads((tmp_path / d / "round_2" / "metrics.json").read_text()) for d in ("ref", "killed"))
    assert ma["stabilisers"] == mb["stabilisers"] and ma["health"] == mb["health"]
    assert ma["stabilisers"]["gate"]["signal"] == "consistency" and ma["stabilisers"]["gate"]["fallback"] is False


def test_the_monitor_scores_with_the_rounds_loaded_models(round_values, tmp_path, monkeypatch):
    """The held-out signal reuses the model the round holds: a round with the monitor on loads no
    model more often than the same round with it off, and its held-out accuracy equals the one
    `dicekit reward-accuracy`'s scorer gives from fresh loads."""
    import dicekit.models
    from dicekit.analysis.health import heldout_from_summary
    from dicekit.data import load_pairs
    from dicekit.evals.reward_accuracy import summarize
    from dicekit.evals.reward_scoring import score_pairs

    loads = []
    real = dicekit.models.load_model

    def spy(spec, *a, **k):
        loads.append(str(spec))
        return real(spec, *a, **k)

    monkeypatch.setattr(dicekit.models, "load_model", spy)
    base = {**round_values, "max_steps": 1, "health_max_pairs": 12}
    run_round(build(RoundConfig, {**base, "run_dir": str(tmp_path / "off"), "health": False}, "t"))
    without = sorted(loads)
    loads.clear()
    rdir = run_round(build(RoundConfig, {**base, "run_dir": str(tmp_path / "on")}, "t"))
    assert sorted(loads) == without
    h = json.loads((rdir / "metrics.json").read_text())["health"]["heldout_accuracy"]
    cfg = build(RoundConfig, {**base, "run_dir": str(tmp_path / "on")}, "t")
    pairs = load_pairs(cfg.offline_data, cfg.offline_split)
    keep = np.sort(np.random.default_rng([cfg.seed, 3]).choice(len(pairs), 12, replace=False))
    fresh = score_pairs(cfg.policy, cfg.reference, pairs.iloc[keep].reset_index(drop=True), length_unit=cfg.length_unit)
    alpha = json.loads((rdir / "metrics.json").read_text())["alpha"]
    assert h["n"] == 12 and h["value"] == heldout_from_summary(summarize(fresh, alpha, seed=cfg.seed))["value"]
