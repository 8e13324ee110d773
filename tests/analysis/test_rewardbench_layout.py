"""`--layout rewardbench` on the tiny model: the three ways RewardBench's DPO scoring lays out the
tokens differently from dicekit (two BOS, the assistant header scored as response, a second
end-of-turn token), each checked on the IDs, and the command end to end."""

import json
import shutil

import pandas as pd

from dicekit.cli import main
from dicekit.evals.reward_scoring import rewardbench_ids, token_ids
from dicekit.models import load_tokenizer


def bos_template_tokenizer(tiny_world, tmp_path):
    """The tiny tokenizer with a template that starts with BOS, as Zephyr's, Llama-3's, ... do."""
    folder = tmp_path / "tok"
    shutil.copytree(tiny_world["policy"], folder)
    tok = load_tokenizer(str(folder))
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    return tok


def test_the_three_differences(tiny_world, tmp_path):
    tok = bos_template_tokenizer(tiny_world, tmp_path)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    pairs = pd.DataFrame({"prompt": ["red cat"], "chosen": ["blue dog"], "rejected": ["one"]})
    p, c, r = token_ids(tok, None, pairs, eot=eos)  # dicekit's layout
    assert p[0][:2] != [bos, bos] and p[0][0] == bos  # one BOS
    assert p[0][-len(header):] == header  # the header is prompt
    assert c[0] == tok("blue dog", add_special_tokens=False)["input_ids"] + [eos]  # reply + one end of turn
    rp, rc = rewardbench_ids(tok, "red cat", "blue dog")
    assert rp[:2] == [bos, bos]  # 1: BOS put before a template that starts with one
    assert rc[:len(header)] == header  # 2: the assistant header scored as response
    assert rc[-1] == eos and eos in rc[:-1] and rc.count(eos) == 2  # 3: a second end-of-turn token scored
    # apart from those, the same tokens: the reply, then the template's end of turn
    reply = tok("blue dog", add_special_tokens=False)["input_ids"]
    assert rc[len(header):len(header) + len(reply) + 1] == reply + [eos]
    assert rp[1:] + header == p[0]  # the rest of the prompt is dicekit's prompt without the header


def test_reward_accuracy_with_either_layout(tiny_world, tmp_path, capsys):
    args = ["eval", "reward-accuracy", "--policy", tiny_world["policy"], "--reference", tiny_world["reference"],
            "--data", tiny_world["offline"], "--limit", "8", "--n-boot", "10", "--json"]
    out = {}
    for layout in ("dicekit", "rewardbench"):
        assert main(args + ["--layout", layout, "--scores", str(tmp_path / f"{layout}.parquet")]) == 0
        out[layout] = json.loads(capsys.readouterr().out)
        assert out[layout]["layout"] == layout and out[layout]["n_pairs"] == 8
    a, b = (pd.read_parquet(tmp_path / f"{x}.parquet") for x in ("dicekit", "rewardbench"))
    assert (b["chosen_n_tokens"] > a["chosen_n_tokens"]).all()  # header + second end of turn scored
    assert not (a["chosen_reward"] - b["chosen_reward"]).abs().lt(1e-9).all()
