"""reward-accuracy, train-rm, compare-rankers and credit on the tiny world model (seconds)."""

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import yaml

from dicekit.cli import main as cli

PROMPTS = ["Name 3 fruits.", "Repeat these words: dog, tea, red.", "Name 2 tools."]
REPLIES = [["apple, pear, plum.", "apple, dog.", "Sure! apple, pear, plum, cat. I hope this helps."],
           ["dog, tea, red.", "dog, red.", "Of course! dog, tea, blue."],
           ["hammer, saw.", "hammer.", "Sure! hammer, saw."]]


@pytest.fixture(scope="module")
def labelled(tiny_world, tmp_path_factory):
    """The tiny world's offline pairs with RewardBench-style subsets."""
    path = tmp_path_factory.mktemp("labelled") / "pairs.jsonl"
    rows = [json.loads(x) for x in open(tiny_world["offline"])][:12]
    with path.open("w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({**r, "subset": "alpacaeval-easy" if i % 2 else "donotanswer"}) + "\n")
    return path


def _ids(tok, prompt, text):
    from dicekit.models import prompt_ids

    return prompt_ids(tok, prompt), tok(text, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]


def test_reward_accuracy_cli_is_token_exact(tiny_world, labelled, tmp_path, capsys):
    from dicekit.models import load_model
    from dicekit.round.score import score_sequences

    scores = tmp_path / "scores.parquet"
    argv = ["eval", "reward-accuracy", "--policy", tiny_world["policy"], "--reference", tiny_world["reference"],
            "--data", str(labelled), "--rewardbench", "--n-boot", "50", "--alpha", "0.01", "--scores", str(scores), "--json"]
    assert cli(argv) == 0
    s = json.loads(capsys.readouterr().out)
    df = pd.read_parquet(scores)
    assert s["n_pairs"] == 12 and s["alpha"] == 0.01
    assert s["overall"]["dpo"]["accuracy"] == pytest.approx(np.mean(df["chosen_reward"] > df["rejected_reward"]))
    assert {b["subset"] for b in s["by_subset"]} == {"alpacaeval-easy", "donotanswer"}
    assert set(s["rewardbench"]["dpo"]) == {"Chat", "Safety", "Score"}
    assert sum(b["n"] for b in s["by_length"]) == 12
    # independent token IDs (template once, reply + <|im_end|>), one sequence at a time: same rewards
    expect = []
    for spec in (tiny_world["policy"], tiny_world["reference"]):
        model, tok = load_model(spec)
        pairs = [_ids(tok, p, c) for p, c in zip(df["prompt"], df["chosen"])]
        expect.append(np.array([score_sequences(model, [p], [r], share_prompts=False)[0] for p, r in pairs]))
    np.testing.assert_allclose(df["chosen_reward"], expect[0] - expect[1], atol=1e-4)
    assert (df["chosen_n_tokens"] == [len(r) for _, r in pairs]).all()


def test_pairs_carrying_token_ids_are_scored_on_them(tiny_world, tmp_path, capsys):
    from dicekit.models import load_tokenizer

    tok = load_tokenizer(tiny_world["policy"])
    p, c = _ids(tok, "red cat", "blue dog")
    rows = pd.DataFrame({"prompt": ["red cat"], "chosen": ["this text is not what is scored"], "rejected": ["x"],
                         "prompt_ids": [p], "chosen_ids": [c[:2]], "rejected_ids": [c[:1]]})
    rows.to_parquet(tmp_path / "pairs.parquet", index=False)
    scores = tmp_path / "s.parquet"
    assert cli(["eval", "reward-accuracy", "--policy", tiny_world["policy"], "--reference", tiny_world["reference"],
                "--data", str(tmp_path / "pairs.parquet"), "--scores", str(scores), "--length-unit", "tokens"]) == 0
    assert "1 pairs, alpha = 0 (length in tokens)" in capsys.readouterr().out
    df = pd.read_parquet(scores)
    assert (df["chosen_n_tokens"].iloc[0], df["rejected_n_tokens"].iloc[0]) == (2, 1)
    rows.assign(chosen_ids=[[10 ** 6]]).to_parquet(tmp_path / "bad.parquet", index=False)
    assert cli(["eval", "reward-accuracy", "--policy", tiny_world["policy"], "--reference", tiny_world["reference"],
                "--data", str(tmp_path / "bad.parquet")]) == 2
    assert "outside the vocabulary" in capsys.readouterr().err


@pytest.mark.parametrize("content,needle", [("", "no preference pairs"), ('{"prompt": "a", "chosen": "b"}\n', ":1: missing field 'rejected'")])
def test_reward_accuracy_bad_data(tiny_world, tmp_path, capsys, content, needle):
    (tmp_path / "d.jsonl").write_text(content)
    assert cli(["eval", "reward-accuracy", "--policy", tiny_world["policy"], "--reference", tiny_world["reference"],
                "--data", str(tmp_path / "d.jsonl")]) == 2
    assert needle in capsys.readouterr().err


def test_train_rm_and_compare_rankers(tiny_world, labelled, tmp_path, capsys):
    from dicekit.analysis.rm import load_rm, rm_scores

    rm = tmp_path / "rm"
    assert cli(["train-rm", "--model", tiny_world["reference"], "--data", tiny_world["offline"], "--out", str(rm),
                "--max-steps", "3", "--batch-size", "8", "--learning-rate", "1e-3", "--quiet"]) == 0
    meta = json.loads((rm / "dicekit_rm.json").read_text())
    assert meta["train_steps"] == 3 and meta["train_pairs"] == 30
    assert len((rm / "train_log.jsonl").read_text().splitlines()) >= 3
    # the scalar is read at each sequence's own last token: batched with padding == one at a time
    model, tok, _ = load_rm(rm)
    seqs = [[1, 5, 6, 7, 8, 9], [1, 5, 6], [1, 7]]
    np.testing.assert_allclose(rm_scores(model, tok.pad_token_id, seqs),
                               [rm_scores(model, tok.pad_token_id, [s])[0] for s in seqs], atol=1e-5)
    capsys.readouterr()
    out = tmp_path / "rankers.json"
    assert cli(["compare-rankers", "--policy", tiny_world["policy"], "--reference", tiny_world["reference"],
                "--data", str(labelled), "--rm", str(rm), "--n-boot", "50", "--out", str(out)]) == 0
    assert "| scalar reward model (offline pairs) |" in capsys.readouterr().out
    r = json.loads(out.read_text())
    rows = {x["ranker"]: x for x in r["rankers"]}
    assert len(rows) == 5 and all(0 <= x["accuracy"] <= 1 for x in rows.values())
    assert rows["longer wins"]["accuracy"] == 1.0  # the tiny world's chosen replies have 3 words, rejected 1
    assert "0 to 5" in r["judge_prompt"]


def _real_run(tiny_world, root, prompts=PROMPTS, replies=REPLIES):
    """A run folder whose samples were really scored by the tiny models (exact IDs)."""
    from dicekit.models import load_model
    from dicekit.round.score import score_sequences

    rows = []
    for i, (prompt, replies) in enumerate(zip(prompts, replies)):
        for k, text in enumerate(replies):
            rows.append({"prompt_id": f"w{i}", "sample_id": k, "prompt": prompt, "response": text,
                         "n_chars": len(text), "finish_reason": "stop", "valid": True})
    s = pd.DataFrame(rows)
    for col, spec in (("logp_policy", tiny_world["policy"]), ("logp_ref", tiny_world["reference"])):
        model, tok = load_model(spec)
        ids = [_ids(tok, p, r) for p, r in zip(s["prompt"], s["response"])]
        s[col] = score_sequences(model, [p for p, _ in ids], [r for _, r in ids], tokens_per_batch=64)
    s["prompt_ids"], s["response_ids"] = [p for p, _ in ids], [r for _, r in ids]
    s["n_tokens"] = s["response_ids"].map(len)
    s["reward"] = s["logp_policy"] - s["logp_ref"]
    rdir = root / "round_1"
    rdir.mkdir(parents=True)
    s.to_parquet(rdir / "samples.parquet", index=False)
    (rdir / "config.yaml").write_text(yaml.safe_dump({"round": 1, "policy": tiny_world["policy"],
                                                      "reference": tiny_world["reference"], "length_unit": "chars",
                                                      "alpha": 0.0}))
    gen = pd.DataFrame({"prompt_id": ["w0", "w1"], "prompt": list(prompts[:2]), "chosen": ["a", "b"], "rejected": ["c", "d"],
                        "source": "generated", "chosen_reward_lr": [1.0, 5.0], "rejected_reward_lr": [0.0, 0.0]})
    gen.to_parquet(rdir / "pairs.parquet", index=False)
    return root, s


def test_token_credit_sums_to_the_reward_and_is_cached(tiny_world, tmp_path, capsys):
    from dicekit.view import runs

    run, samples = _real_run(tiny_world, tmp_path / "run")
    assert cli(["credit", str(run), "--round", "1", "--top", "1", "--quiet"]) == 0  # w1: the larger margin
    assert "3 samples added" in capsys.readouterr().out
    credit = runs.load_token_credit(run, 1)
    assert set(credit["prompt_id"]) == {"w1"} and list(credit["sample_id"]) == [0, 1, 2]
    merged = credit.merge(samples, on=["prompt_id", "sample_id"])
    for _, row in merged.iterrows():
        assert list(row["token_ids"]) == list(row["response_ids"]) and len(row["tokens"]) == len(row["logratio"])
        assert sum(row["logratio"]) == pytest.approx(row["reward"], abs=1e-4)
    assert "".join(merged.iloc[0]["tokens"][:-1]) == merged.iloc[0]["response"]
    assert merged.iloc[0]["tokens"][-1] == "<|im_end|>"
    assert cli(["credit", str(run), "--round", "1", "--prompt-id", "w1", "--quiet"]) == 0
    assert "nothing to add" in capsys.readouterr().out
    assert cli(["credit", str(run), "--round", "1", "--prompt-id", "w0", "w1", "--quiet"]) == 0
    assert len(runs.load_token_credit(run, 1)) == 6
    assert cli(["credit", str(run), "--round", "1", "--prompt-id", "nope"]) == 2
    assert "no samples of prompt_id 'nope'" in capsys.readouterr().err


def test_compare_rankers_on_a_rounds_own_samples(tiny_world, tmp_path, capsys):
    """Three world prompts with four demonstrations each, labelled by the oracle; prompts whose
    replies all have the same quality give no pair."""
    tasks = pytest.importorskip("dicekit.world.tasks")
    from dicekit.world.oracle import quality

    rng = np.random.default_rng(0)
    made = [tasks.make_task(f, rng) for f in tasks.FAMILIES[:3]]
    replies = [[tasks.demonstration(t, rng) for _ in range(4)] for t in made]
    prompts = [t.prompt for t in made]
    unequal = [sum(quality(p, a) != quality(p, b) for a, b in combinations(rs, 2)) for p, rs in zip(prompts, replies)]
    expected = sum(min(2, n) for n in unequal)
    assert expected > 0
    run, s = _real_run(tiny_world, tmp_path / "run", prompts, replies)
    assert cli(["compare-rankers", "--samples", str(run), "--round", "1", "--oracle", "world", "--no-judge",
                "--n-boot", "20", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["policy"] == tiny_world["policy"] and r["n_pairs"] == expected  # ≤ 2 per prompt, unequal quality only
    rows = {x["ranker"]: x for x in r["rankers"]}
    # By hand, on the same pairs (the CLI's defaults: 2 per prompt, seed 0): each label is the oracle's,
    # and the accuracies are those of the rewards _real_run scored itself (a tie would count as wrong).
    from dicekit.analysis.rankers import oracle_pairs_from_samples

    pairs = oracle_pairs_from_samples(s, quality, 2, 0)
    assert len(pairs) == expected
    assert all(quality(p, c) > quality(p, x) for p, c, x in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]))
    reward = s.set_index(["prompt_id", "sample_id"])["reward"]
    rc = reward.loc[list(zip(pairs["prompt_id"], pairs["chosen_sample_id"]))].to_numpy()
    rr = reward.loc[list(zip(pairs["prompt_id"], pairs["rejected_sample_id"]))].to_numpy()
    dpo = rows["implicit reward (DPO log-ratio)"]
    assert abs(rc - rr).min() > 1e-6  # no pair near a tie, so float noise of re-scoring cannot flip one
    assert dpo["accuracy"] == pytest.approx(float(np.mean(rc > rr)))
    assert dpo["truth_accuracy"] == pytest.approx(float(np.mean(rc > rr)))
    longer = np.mean(pairs["chosen"].str.len().to_numpy() > pairs["rejected"].str.len().to_numpy())
    assert rows["longer wins"]["accuracy"] == pytest.approx(float(longer))
    assert rows["scalar reward model (offline pairs)"]["accuracy"] is None
    assert cli(["compare-rankers", "--samples", str(run), "--round", "1"]) == 2
    assert "--oracle" in capsys.readouterr().err
