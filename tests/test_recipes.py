"""The paper's recipes (benchmarks/zephyr-7b, benchmarks/llama3-8b) and `dicekit check-recipe`.

Offline and fast: nothing is downloaded; the architectures come from the built-in table.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from dicekit import cli
from dicekit.config import RoundConfig, load

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"zephyr-7b": ROOT / "benchmarks" / "zephyr-7b", "llama3-8b": ROOT / "benchmarks" / "llama3-8b"}
STRATEGIES = {"accelerate_ddp.yaml": "ddp", "accelerate_zero3.yaml": "zero3", "accelerate_fsdp.yaml": "fsdp"}


def run(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------ the recipes


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_has_the_official_hyperparameters(name):
    """docs/method-notes.md, "The official recipe": K 16, 2048 new tokens, β 0.1, lr 5e-7
    constant, global batch 32, 300 steps, γ 0.5, 2 rounds, 8 valid samples, ≤3/≥6700 characters;
    Zephyr T 0.7 / top-p 0.9, Llama-3 T 0.9 / top-p 1.0; π_0 / π_{-1} as in the paper."""
    cfg = load(RoundConfig, RECIPES[name] / "round.yaml")
    assert (cfg.samples_per_prompt, cfg.max_new_tokens, cfg.beta, cfg.learning_rate) == (16, 2048, 0.1, 5e-7)
    assert (cfg.lr_scheduler_type, cfg.warmup_steps) == ("constant", 0)
    assert (cfg.global_batch_size, cfg.max_steps) == (32, 300)
    assert (cfg.replay_ratio, cfg.num_rounds, cfg.min_valid_samples, cfg.min_chars, cfg.max_chars) == (0.5, 2, 8, 3, 6700)
    assert cfg.drop_truncated and cfg.length_unit == "chars" and cfg.alpha is None
    assert cfg.alpha_grid == (0.0, 0.999, 0.001) and cfg.alpha_search == "first_worsening"
    assert cfg.loss_type == ("sigmoid",) and cfg.score_dtype == "float32"
    assert cfg.prompts == cfg.offline_data == "HuggingFaceH4/ultrafeedback_binarized"
    assert cfg.max_prompts == 10000 and cfg.max_pairs == 9600 == cfg.max_steps * cfg.global_batch_size
    expected = {
        "zephyr-7b": ("HuggingFaceH4/zephyr-7b-beta", "HuggingFaceH4/mistral-7b-sft-beta", 0.7, 0.9),
        "llama3-8b": ("princeton-nlp/Llama-3-Base-8B-SFT-DPO", "princeton-nlp/Llama-3-Base-8B-SFT", 0.9, 1.0),
    }[name]
    assert (cfg.policy, cfg.reference, cfg.temperature, cfg.top_p) == expected
    assert cfg.backend == "vllm"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_lists_only_keys_that_differ_from_the_defaults(name):
    data = yaml.safe_load((RECIPES[name] / "round.yaml").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(RoundConfig)}
    same = [k for k, v in data.items() if defaults.get(k, dataclasses.MISSING) == v]
    assert not same, f"keys equal to the defaults: {same}"


@pytest.mark.parametrize("name", sorted(RECIPES))
@pytest.mark.parametrize("file", sorted(STRATEGIES))
def test_accelerate_configs_parse_with_accelerate(name, file):
    from accelerate.commands.config.config_args import load_config_from_file

    c = load_config_from_file(str(RECIPES[name] / file))
    assert c.num_processes == 8 and c.num_machines == 1 and c.mixed_precision == "bf16"
    if file == "accelerate_zero3.yaml":
        assert c.deepspeed_config["zero_stage"] == 3
    if file == "accelerate_fsdp.yaml":
        layer = {"zephyr-7b": "MistralDecoderLayer", "llama3-8b": "LlamaDecoderLayer"}[name]
        assert c.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == layer


def test_readmes_give_the_published_numbers_and_commands():
    """AlpacaEval 2 LC / WR from the paper (docs/method-notes.md), and the commands to run."""
    published = {"zephyr-7b": ["12.69", "10.71", "19.03", "17.67", "20.71", "20.16"],
                 "llama3-8b": ["18.20", "15.50", "25.08", "25.77", "27.55", "30.99"]}
    for name, numbers in published.items():
        text = (RECIPES[name] / "README.md").read_text()
        for n in numbers:
            assert n in text, (name, n)
        for cmd in ("dicekit check-recipe", "accelerate launch", "run-round", "dicekit eval alpaca",
                    "dicekit eval arena-hard"):
            assert cmd in text, (name, cmd)


# ------------------------------------------------------------------------------ check-recipe


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_both_recipes_pass_check_recipe(name, capsys):
    """Parameters from the built-in table, worked by hand: Mistral 7B (h 4096, I 14336, 32 layers, 8 of
    32 heads for K/V → kv dim 1024, vocab 32000, untied): 2·32000·4096 + 32·(2·4096² + 2·4096·1024 +
    3·4096·14336 + 2·4096) + 4096 = 7,241,732,096. Llama 3 8B: vocab 128256 → 8,030,261,248.
    Under ZeRO-3 on 8 GPUs the model states are 16 bytes/param / 8 = 2 bytes/param → 13.5 / 15.0 GiB."""
    rc, out, err = run(["check-recipe", str(RECIPES[name] / "round.yaml"), "--json"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    params = {"zephyr-7b": 7_241_732_096, "llama3-8b": 8_030_261_248}[name]
    assert r["estimate"]["params"] == params
    assert set(r["estimate"]["train"]) == {"ddp", "fsdp", "zero3"}
    zero3 = r["estimate"]["train"]["zero3"]
    layer_bf16 = 2 * 2 * params / 32 / 2**30  # two gathered layers
    assert zero3["states_gib"] == pytest.approx(params * 2 / 2**30 + layer_bf16, rel=1e-9)
    assert zero3["fits"]
    assert {"generate", "score", "train"} <= set(r["estimate"]["stages"])
    assert r["estimate"]["stages"]["train"]["tokens"] == 300 * 32 * 2 * (200 + 400)
    # scoring: 10,000 prompts once and 160,000 responses under both models (prompts shared by their 16
    # samples), plus 4,800 offline pairs (prompt once, two responses) under the training reference
    assert r["estimate"]["stages"]["score"]["tokens"] == 2 * (10_000 * 200 + 160_000 * 400) + 4_800 * (200 + 2 * 400)
    rc, text, err = run(["check-recipe", str(RECIPES[name] / "round.yaml")], capsys)
    assert rc == 0 and "valid round config" in text and "assumptions, not measurements" in text


@pytest.mark.parametrize("file", sorted(STRATEGIES))
def test_check_recipe_with_each_accelerate_config(file, capsys):
    d = RECIPES["zephyr-7b"]
    rc, out, err = run(["check-recipe", str(d / "round.yaml"), "--accelerate", str(d / file), "--json"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["accelerate"]["strategy"] == STRATEGIES[file] and r["accelerate"]["num_processes"] == 8
    assert list(r["estimate"]["train"]) == [STRATEGIES[file]]
    # fp32 weights, grads, AdamW m and v whatever train_dtype (bf16 is autocast): 16 bytes per parameter,
    # FSDP sharded over 8 GPUs plus two gathered fp32 layers
    P = 7_241_732_096
    want = {"ddp": 16 * P, "fsdp": 16 * P / 8 + 2 * 4 * P / 32, "zero3": 2 * P + 2 * 2 * P / 32}[STRATEGIES[file]]
    assert r["estimate"]["train"][STRATEGIES[file]]["states_gib"] == pytest.approx(want / 2**30, rel=1e-9)


def test_ddp_in_float32_does_not_fit_a_7b_model(capsys):
    """DDP keeps weights, grads, m, v whole on every GPU: 16 bytes × 7.24e9 = 108 GiB > 80."""
    d = RECIPES["zephyr-7b"]
    rc, out, _ = run(["check-recipe", str(d / "round.yaml"), "train_dtype=float32", "--accelerate",
                      str(d / "accelerate_ddp.yaml"), "--json"], capsys)
    r = json.loads(out)
    assert rc == 0 and not r["estimate"]["train"]["ddp"]["fits"]
    assert r["estimate"]["train"]["ddp"]["states_gib"] == pytest.approx(16 * 7_241_732_096 / 2**30)
    assert any("needs about" in w for w in r["warnings"])


def test_local_model_folder_uses_its_config_json(tmp_path, capsys):
    for name, vocab in (("pol", 500), ("ref", 500)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({
            "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
            "num_key_value_heads": 1, "vocab_size": vocab, "tie_word_embeddings": True}))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "x"}\n')
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "policy": str(tmp_path / "pol"),
                                   "reference": str(tmp_path / "ref"), "prompts": str(prompts),
                                   "replay_ratio": 0.0, "max_prompts": 1}))
    rc, out, err = run(["check-recipe", str(cfg), "--json"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    # tied: 500·64 + 2·(2·64² + 2·64·32 + 3·64·128 + 2·64) + 64 = 32000 + 2·(8192 + 4096 + 24576 + 128) + 64
    assert r["estimate"]["params"] == 32000 + 2 * (8192 + 4096 + 24576 + 128) + 64
    assert r["models"]["policy"]["local"] and not any("pinned" in w for w in r["warnings"])


def _bad(tmp_path, **changes):
    data = yaml.safe_load((RECIPES["zephyr-7b"] / "round.yaml").read_text())
    data.update(changes)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("changes, needle", [
    ({"betta": 0.1}, "unknown key 'betta'"),
    ({"beta": "high"}, "key 'beta'"),
    ({"policy": "zephyr 7b beta"}, "key 'policy'"),
    ({"reference": "HuggingFaceH4/mistral-7b-sft-beta@bad rev"}, "key 'reference'"),
    ({"prompts_split": "train"}, "key 'prompts_split'"),
    ({"reference": "princeton-nlp/Llama-3-Base-8B-SFT"}, "different vocabularies"),
])
def test_broken_recipe_exits_2_with_one_line(tmp_path, capsys, changes, needle):
    path = _bad(tmp_path, **changes)
    rc, out, err = run(["check-recipe", path], capsys)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "broken.yaml" in lines[0], err


def test_broken_accelerate_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "acc.yaml"
    bad.write_text("distributed_type: TPU\nnum_processes: 8\n")
    rc, _, err = run(["check-recipe", str(RECIPES["zephyr-7b"] / "round.yaml"), "--accelerate", str(bad)], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "distributed_type" in err


def test_bad_flag_exits_2(capsys):
    rc, _, err = run(["check-recipe", str(RECIPES["zephyr-7b"] / "round.yaml"), "--mfu", "2"], capsys)
    assert rc == 2 and "--mfu" in err


def test_scoring_estimate_and_batch_warning_worked_by_hand(capsys):
    """Zephyr recipe (Mistral 7B, score_dtype float32, per_device_batch_size 1, global 32). Scoring on a
    GPU: 16,384 tokens × (4·4096 + 3·14336) × 4 bytes + 1,024 LM-head positions × 32,000 × 4 bytes
    = 3,892,314,112 + 131,072,000 bytes. On 3 GPUs: 32 // 3 = 10 accumulation steps × 3 = 30 pairs a step,
    so 300 steps see 9,000 of the 9,600 pairs (0.94 epochs)."""
    rc, out, err = run(["check-recipe", str(RECIPES["zephyr-7b"] / "round.yaml"), "--gpus", "3", "--json"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["estimate"]["score"]["activations_gib"] == pytest.approx((3_892_314_112 + 131_072_000) / 2**30, rel=1e-12)
    assert any("each step trains on 30 pairs" in w for w in r["warnings"])
    assert any("9000 pairs for 9600 pairs: 0.94 epochs" in w for w in r["warnings"])
