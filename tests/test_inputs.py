"""Input handling, worked by hand: which specs are local paths, how run-folder paths are stored and
read back, UTF-8 errors with their line and column, the max_prompt_tokens policy, YAML numbers,
and the figures' axis and loss label."""

import pytest

from dicekit import config, rundir
from dicekit.data import decode_utf8, within_limit
from dicekit.errors import UserError
from dicekit.view.plots import objective_label, win_rate_axis


@pytest.mark.parametrize("spec,local", [
    ("HuggingFaceH4/zephyr-7b-beta", False), ("gpt2", False), ("org/name@main", False),
    ("./pi0", True), ("/abs/pi0", True), ("~/pi0", True), ("data/prompts.jsonl", True), ("pi0.gguf", True),
    ("a/b/c", True), ("dir with space/x", True),
])
def test_local_specs_never_look_like_hub_ids(spec, local):
    assert rundir.is_local_spec(spec, check_exists=False) is local


def test_a_relative_path_whose_first_folder_exists_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not rundir.is_local_spec("models/pi0")
    (tmp_path / "models").mkdir()
    assert rundir.is_local_spec("models/pi0")


def test_stored_and_resolved_paths(tmp_path):
    run = tmp_path / "run"
    assert rundir.stored_path(run, str(run / "round_1" / "model")) == "./round_1/model"
    assert rundir.stored_path(run, str(tmp_path / "pi0")) == str(tmp_path / "pi0")
    assert rundir.stored_path(run, "org/name") == "org/name"
    moved = tmp_path / "moved"
    assert rundir.resolved_path(moved, "./round_1/model") == str(moved / "round_1" / "model")
    assert rundir.resolved_path(moved, "org/name") == "org/name"
    assert rundir.resolved_config(moved, {"policy": "./round_1/model", "seed": 1}) == {
        "policy": str(moved / "round_1" / "model"), "seed": 1}


def test_shown_paths_are_never_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DICEKIT_CACHE", raising=False)
    run = tmp_path / "runs" / "r"
    assert rundir.shown_path(run / "round_1" / "model", run) == "round_1/model"
    assert rundir.shown_path(tmp_path / "home" / ".cache" / "w" / "pi_0", run) == "~/.cache/w/pi_0"
    assert rundir.shown_path(tmp_path / "models" / "pi0", run) == "../../models/pi0"
    assert rundir.shown_path("org/name", run) == "org/name"
    # a world model in dicekit's cache root (the demo's π_0) is named by that root, not by ../..
    monkeypatch.setenv("DICEKIT_CACHE", str(tmp_path / "cache"))
    world_pi0 = tmp_path / "cache" / "world" / "pi_0-bfc0" / "model"
    assert rundir.shown_path(world_pi0, run) == "$DICEKIT_CACHE/world/pi_0-bfc0/model"


def test_utf8_errors_name_line_and_column():
    assert decode_utf8(b"\xef\xbb\xbfok\n", "f") == "ok\n"  # a BOM is dropped
    with pytest.raises(UserError, match=r"^f:3: not UTF-8 text \(byte 0xe9 at column 4\)"):
        decode_utf8(b"a\n\ncaf\xe9\n", "f")


def test_max_prompt_tokens_policy():
    assert within_limit([3, 9, 4], None, "error", str) == [True, True, True]
    assert within_limit([3, 9, 4], 9, "error", str) == [True, True, True]
    assert within_limit([3, 9, 4], 5, "drop", str) == [True, False, True]
    with pytest.raises(UserError, match=r"^p.jsonl:7: 9 tokens, more than max_prompt_tokens=5"):
        within_limit([3, 9, 4], 5, "error", lambda i: f"p.jsonl:{[2, 7, 9][i]}")


def test_prompt_token_limit_defaults_to_the_context_minus_new_tokens(tiny_world):
    from dicekit.models import context_length, prompt_token_limit

    assert context_length(tiny_world["policy"]) == 256
    assert prompt_token_limit(tiny_world["policy"], 16) == 240
    assert prompt_token_limit(tiny_world["policy"], 16, 100) == 100
    assert prompt_token_limit(tiny_world["policy"], 16, 1000) == 240  # capped by the context
    assert prompt_token_limit(tiny_world["policy"], 2048) == 256  # no room left for new tokens: the context


def test_yaml_1_1_exponents_are_numbers_and_row_limits_positive(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_dir: r\npolicy: p\nreference: q\nprompts: x.jsonl\nlearning_rate: 5e-7\nreplay_ratio: 0\n")
    assert config.load(config.RoundConfig, path).learning_rate == 5e-7
    with pytest.raises(UserError, match=r"c.yaml \(with overrides\): key 'max_prompts': must be >= 1"):
        config.load(config.RoundConfig, path, ["max_prompts=0"])
    path.write_text(path.read_text() + "max_prompts: -1\n")
    with pytest.raises(UserError) as err:
        config.load(config.RoundConfig, path, [])  # no overrides given: none mentioned
    assert str(err.value) == f"{path}: key 'max_prompts': must be >= 1 (or null for all)"


def test_win_rate_axis_is_at_least_20_points_and_within_0_100():
    assert win_rate_axis([45.0, 47.0], [1.0, 1.0]) == (36.0, 56.0)  # 44..48 padded by 8 each side
    assert win_rate_axis([2.0], [1.0]) == (0.0, 20.0)  # clipped at 0, span kept
    assert win_rate_axis([99.0], None) == (80.0, 100.0)
    assert win_rate_axis([10.0, 90.0], [2.0, 2.0]) == (8.0, 92.0)  # wide already: untouched


def test_the_loss_label_names_the_objective():
    assert objective_label(["sigmoid"]) == "loss: DPO (sigmoid)"
    assert objective_label(["sigmoid", "sft"], [1.0, 1.0]) == "loss: DPO (sigmoid) + 1·SFT"
    assert objective_label(["sigmoid", "sft"], [1.0, 0.5]) == "loss: DPO (sigmoid) + 0.5·SFT"
    assert objective_label("ipo") == "loss: IPO"


def test_an_empty_rejected_response_is_kept_with_a_note_an_empty_chosen_is_an_error(tmp_path, capsys):
    from dicekit.data import load_pairs

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "chosen": "e", "rejected": " "}\n')
    assert len(load_pairs(str(path))) == 2
    assert capsys.readouterr().err.strip() == f"note: 1 pairs have an empty 'rejected' response (kept; first at {path}:2)"
    path.write_text('{"prompt": "a", "chosen": "", "rejected": "c"}\n')
    with pytest.raises(UserError, match=r"p.jsonl:1: field 'chosen' is empty"):
        load_pairs(str(path))
