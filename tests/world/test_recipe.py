"""The world recipe at the demo's reduced size: files, schemas, token-exactness, caching by content."""

import dataclasses
import json

import pandas as pd

from dicekit.world import recipe, tasks
from dicekit.world.oracle import quality


def test_world_files_and_models(ci_world):
    w, cfg = ci_world["world"], ci_world["config"]
    for split, path, n in (("dice", w.dice_prompts, cfg.dice_prompts), ("eval", w.eval_prompts, cfg.eval_prompts),
                           ("offline", w.offline_prompts, cfg.offline_prompts)):
        rows = recipe.read_jsonl(path)
        assert len(rows) == n and len({r["prompt_id"] for r in rows}) == n
        assert all(tasks.split_of(r["prompt"]) == split and r["prompt_id"] == tasks.prompt_id(r["prompt"]) for r in rows)
    assert all(0.0 <= quality(r["prompt"], r["reference"]) <= 1.0 for r in recipe.read_jsonl(w.eval_prompts))
    sft = recipe.read_jsonl(w.sft)
    assert len(sft) == cfg.sft_examples and all(tasks.split_of(r["prompt"]) == "sft" for r in sft)

    pairs = recipe.read_jsonl(w.offline_pairs)
    offline_ids = {r["prompt_id"] for r in recipe.read_jsonl(w.offline_prompts)}
    assert 0 < len(pairs) <= cfg.offline_prompts
    assert all(p["prompt_id"] in offline_ids and p["chosen"] != p["rejected"] for p in pairs)
    # the token IDs kept for training π_0 are the sampled ones, and decode to the text in the jsonl
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(w.pi_m1))
    ids = pd.read_parquet(w.offline_pairs_ids)
    assert list(ids["prompt_id"]) == [p["prompt_id"] for p in pairs]
    special = set(tok.all_special_ids)
    for p, c_ids, r_ids in zip(pairs, ids["chosen_ids"], ids["rejected_ids"]):
        assert c_ids[-1] == tok.eos_token_id == r_ids[-1]
        for text, seq in ((p["chosen"], list(c_ids[:-1])), (p["rejected"], list(r_ids[:-1]))):
            assert tok.decode(seq, skip_special_tokens=True) == text
            if not special & set(seq):  # a briefly trained model may sample e.g. <|pad|>, which text drops
                assert tok(text, add_special_tokens=False)["input_ids"] == seq  # text round-trips
    held = recipe.read_jsonl(w.heldout_pairs)
    assert held and all(h["quality_chosen"] == quality(h["prompt"], h["chosen"]) for h in held)

    for model in (w.pi_m1, w.pi_0):
        assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
        gen = json.loads((model / "generation_config.json").read_text())
        assert gen["eos_token_id"] in ([tok.eos_token_id], tok.eos_token_id)
    log = [json.loads(x) for x in (w.pi_0.parent / "train_log.jsonl").read_text().splitlines()]
    assert log and "loss" in log[0]


def test_second_build_reuses_everything_and_keys_follow_content(ci_world, capsys):
    w, cfg = ci_world["world"], ci_world["config"]
    again = recipe.build(cfg, root=w.root, quiet=False)
    assert again == dataclasses.replace(w, timings={})
    assert "building" not in capsys.readouterr().err
    keys = recipe.stage_keys(cfg)
    moved = recipe.stage_keys(dataclasses.replace(cfg, pi0_learning_rate=cfg.pi0_learning_rate * 2))
    assert [moved[s] == keys[s] for s in ("data", "pi_m1", "offline", "pi_0")] == [True, True, True, False]
    moved = recipe.stage_keys(dataclasses.replace(cfg, annotator_verbosity=0.0))
    assert [moved[s] == keys[s] for s in ("data", "pi_m1", "offline", "pi_0")] == [True, True, False, False]
    moved = recipe.stage_keys(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert all(moved[s] != keys[s] for s in keys)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DICEKIT_CACHE", str(tmp_path))
    assert recipe.cache_root() == tmp_path / "world"
    monkeypatch.delenv("DICEKIT_CACHE")
    assert recipe.cache_root().parts[-3:] == (".cache", "dicekit", "world")
