"""`dicekit eval alpaca` end to end offline (tiny local model as generator and judge) and bad input."""

import json

import pytest

from dicekit.evals import judges
from tests.evals.conftest import run_cli

ROW = {"instruction": "Name a colour.", "output_1": "Blue.", "generator_1": "gpt4_1106_preview",
       "output_2": "Red is a colour.", "generator_2": "tiny", "annotator": "x", "preference": 1.7}


def one_line_exit_2(argv, capsys, *needles):
    rc, out, err = run_cli(["eval", "alpaca", *argv], capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def write(path, obj, raw=False):
    path.write_text(obj if raw else json.dumps(obj))
    return str(path)


def test_annotations_missing_columns(tmp_path, capsys):
    row = {k: v for k, v in ROW.items() if k != "output_2"}
    one_line_exit_2(["--annotations", write(tmp_path / "a.json", [ROW, row]), "--json"], capsys,
                    "a.json: record 2", "output_2")


def test_annotations_with_two_generators(tmp_path, capsys):
    rows = [ROW, {**ROW, "instruction": "Other.", "generator_2": "other-model"}]
    one_line_exit_2(["--annotations", write(tmp_path / "a.json", rows)], capsys, "generator_2", "2 generators")


@pytest.mark.parametrize("bad", ["NaN", "null"])
def test_annotations_with_nan_preference(tmp_path, capsys, bad):
    text = json.dumps([ROW, {**ROW, "instruction": "Other.", "preference": "__BAD__"}]).replace('"__BAD__"', bad)
    one_line_exit_2(["--annotations", write(tmp_path / "a.json", text, raw=True)], capsys, "a.json: record 2", "preference")


def test_empty_outputs_file(tmp_path, capsys):
    ref = write(tmp_path / "ref.json", [{"instruction": "Name a colour.", "output": "Blue.", "generator": "g"}])
    one_line_exit_2(["--outputs", write(tmp_path / "out.json", []), "--reference-outputs", ref, "--judge", "x"],
                    capsys, "out.json", "empty")


def test_outputs_with_two_generators_and_bad_json(tmp_path, capsys):
    ref = write(tmp_path / "ref.json", [{"instruction": "Name a colour.", "output": "Blue.", "generator": "g"}])
    outs = [{"instruction": "a", "output": "b", "generator": "m1"}, {"instruction": "c", "output": "d", "generator": "m2"}]
    one_line_exit_2(["--outputs", write(tmp_path / "o.json", outs), "--reference-outputs", ref], capsys, "generator")
    one_line_exit_2(["--annotations", write(tmp_path / "x.json", "[{", raw=True)], capsys, "malformed JSON")


def test_usage_errors_are_one_line(capsys):
    one_line_exit_2(["--json"], capsys, "one of the arguments")
    one_line_exit_2(["--annotations", "a.json", "--outputs", "b.json"], capsys, "not allowed with")


# --- offline end to end: a tiny HF model generates and judges ----------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.tiny import build_model, build_tokenizer

    root = tmp_path_factory.mktemp("tiny_judge")
    tok = build_tokenizer(root / "tok")
    return str(build_model(root / "model", tok, seed=3, train_steps=0))


@pytest.fixture
def small_eval(tmp_path):
    reference = [{"instruction": q, "output": a, "generator": "gpt4_1106_preview", "dataset": "toy"}
                 for q, a in [("Name a colour.", "Blue."), ("Count to three.", "one two three"),
                              ("Say yes.", "yes"), ("Say no.", "no")]]
    return write(tmp_path / "ref.json", reference), reference


def test_hf_judge_is_the_models_next_token_ratio(tiny_model):
    """Preference = 2 − P(m) / (P(m) + P(M)) of the next token after the templated judge prompt,
    mapped back by 3 − p when the instruction's coin shows the model's output first."""
    import torch

    from dicekit.evals.hf_judge import HFJudge
    from dicekit.models import prompt_ids

    judge = HFJudge(tiny_model)
    items = [judges.Comparison("Name a colour.", "Blue.", "red"), judges.Comparison("Say maybe.", "maybe", "no no")]
    got = judge.judge_detailed(items)
    for item, j in zip(items, got):
        messages, switched = judges.comparison_messages(judge.template, item)
        ids = torch.tensor([prompt_ids(judge.tokenizer, messages)])
        with torch.no_grad():
            probs = torch.softmax(judge.model(input_ids=ids).logits[0, -1].double(), dim=-1)
        p_m, p_big_m = float(probs[judge.label_ids[0]]), float(probs[judge.label_ids[1]])
        expected = 2 - p_m / (p_m + p_big_m)
        assert j.preference == pytest.approx(3 - expected if switched else expected, abs=1e-5)
        assert judges.preference_from_raw_completion(j.raw_completion, item.instruction) == j.preference
    assert {judges.is_switched(i.instruction) for i in items} == {True, False}


def test_end_to_end_generate_judge_metrics_offline(tiny_model, small_eval, tmp_path, capsys):
    ref, reference = small_eval
    argv = ["eval", "alpaca", "--model", tiny_model, "--name", "tiny", "--reference-outputs", ref,
            "--judge", f"hf:{tiny_model}", "--max-new-tokens", "6", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "run"), "--json"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    result = json.loads(out)
    outputs = json.loads((tmp_path / "run" / "model_outputs.json").read_text())
    annotations = json.loads((tmp_path / "run" / "annotations.json").read_text())
    assert [o["instruction"] for o in outputs] == [r["instruction"] for r in reference]
    assert {o["generator"] for o in outputs} == {"tiny"} and {a["generator_2"] for a in annotations} == {"tiny"}
    prefs = [a["preference"] for a in annotations]
    assert all(1 <= p <= 2 for p in prefs)
    assert result["win_rate"] == pytest.approx(100 * sum(p - 1 for p in prefs) / len(prefs))
    assert result["n_total"] == 4 and result["judge_n_called"] + result["judge_n_identical"] == 4
    # our files are alpaca_eval's formats: the leaderboard reads back, reparse re-derives every preference
    import pandas as pd

    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv", index_col=0)
    assert board.loc["tiny", "win_rate"] == pytest.approx(result["win_rate"])
    rc, out, err = run_cli(["eval", "alpaca", "--annotations", str(tmp_path / "run" / "annotations.json"),
                            "--reparse", "--json"], capsys)
    assert rc == 0 and json.loads(out)["n_reparse_mismatch"] == 0
    upstream = pytest.importorskip("alpaca_eval.metrics")
    theirs = upstream.get_winrate(pd.read_json(tmp_path / "run" / "annotations.json"))
    assert theirs["win_rate"] == pytest.approx(result["win_rate"]) and theirs["n_total"] == 4
    # a second run reuses the generated outputs and the cached judgements
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0 and "reusing" in err
    assert json.loads(out)["judge_n_called"] == 0 and json.loads(out)["win_rate"] == result["win_rate"]


def test_reference_outputs_from_the_hub_data_file(monkeypatch, alpaca_dir):
    """No loading script: the hub dataset's JSON data file, fetched by huggingface_hub."""
    import huggingface_hub

    from dicekit.evals import alpaca_data as alpaca

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(alpaca_dir / "reference_outputs.json")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    rows = alpaca.load_outputs(None, "reference outputs")
    assert calls == [{"repo_id": "tatsu-lab/alpaca_eval", "filename": "alpaca_eval_gpt4_baseline.json",
                      "repo_type": "dataset"}]
    assert len(rows) == 805 and {r["generator"] for r in rows} == {"gpt4_1106_preview"}


def test_world_oracle_as_judge(tmp_path, capsys):
    """`--judge oracle`: the task world's ground truth behind the same interface, end to end."""
    pytest.importorskip("dicekit.world.judge")
    from dicekit.world.oracle import quality
    from dicekit.world.tasks import correct_content, render, sample_tasks

    tasks = sample_tasks("eval", 6, seed=0)
    good = [render(correct_content(t)) for t in tasks]
    reference = [{"instruction": t.prompt, "output": g if i % 2 else "no idea", "generator": "base"}
                 for i, (t, g) in enumerate(zip(tasks, good))]
    outputs = [{"instruction": t.prompt, "output": g if i < 3 else "banana", "generator": "mine"}
               for i, (t, g) in enumerate(zip(tasks, good))]
    rc, out, err = run_cli(["eval", "alpaca", "--outputs", write(tmp_path / "o.json", outputs), "--reference-outputs",
                            write(tmp_path / "r.json", reference), "--judge", "oracle", "--out", str(tmp_path / "run"),
                            "--json"], capsys)
    assert rc == 0, err
    rows = json.loads((tmp_path / "run" / "annotations.json").read_text())
    expected = []
    for r, o in zip(reference, outputs):
        qb, qm = quality(r["instruction"], r["output"]), quality(r["instruction"], o["output"])
        expected.append(1.5 if r["output"] == o["output"] or qb == qm else 2.0 if qm > qb else 1.0)
    assert [row["preference"] for row in rows] == expected
    assert 1.0 in expected and 2.0 in expected and 1.5 in expected  # a loss, a win and an identical pair
    assert json.loads(out)["win_rate"] == pytest.approx(100 * sum(p - 1 for p in expected) / 6)
