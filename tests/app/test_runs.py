"""dicekit.view.runs: the read-only run-folder loaders, on the hand-written fixture (tests/app/runfolder.py)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from dicekit.view import runs
from dicekit.errors import UserError
from tests.app.runfolder import make_run_folder



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run_folder(tmp_path_factory.mktemp("run"))


def test_rounds_ignore_round_0_and_stray_entries(run, tmp_path):
    assert runs.rounds(run) == [1, 2]  # round_0/ holds π_0's evals only
    (tmp_path / "round_x").mkdir()
    (tmp_path / "round_3").write_text("a file, not a round folder")
    assert runs.rounds(tmp_path) == []
    with pytest.raises(UserError, match="no round_<t>/ folder"):
        runs.check_run_dir(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        runs.check_run_dir(tmp_path / "missing")
    assert runs.check_run_dir(run) == run


def test_loaders_read_every_file(run):
    assert runs.load_config(run, 1)["alpha"] == pytest.approx(0.007)
    assert runs.load_run_config(run)["num_rounds"] == 2
    assert len(runs.load_samples(run, 1)) == 16
    assert len(runs.load_pairs(run, 1)) == 6
    assert list(runs.load_alpha_sweep(run, 1).columns) == ["alpha", "mean_len_diff", "n_pairs"]
    log = runs.load_train_log(run, 1)
    assert list(log["step"]) == [1, 2, 3, 4, 5] and "rewards/accuracies" in log
    assert runs.load_metrics(run, 2)["n_pairs_offline"] == 2


def test_load_samples_reads_one_prompt_and_some_columns(run):
    df = runs.load_samples(run, 1, columns=["prompt_id", "sample_id", "reward"], prompt_ids=["p3"])
    assert list(df.columns) == ["prompt_id", "sample_id", "reward"]
    assert list(df["sample_id"]) == [0, 1, 2, 3] and set(df["prompt_id"]) == {"p3"}
    assert np.isnan(df["reward"].iloc[3])  # the invalid sample is unscored


def test_missing_optional_files_are_none(run, tmp_path):
    (tmp_path / "round_1").mkdir()
    for load in (runs.load_config, runs.load_samples, runs.load_pairs, runs.load_alpha_sweep, runs.load_train_log,
                 runs.load_metrics, runs.load_token_credit, runs.load_evals):
        assert load(tmp_path, 1) is None, load.__name__
    assert runs.eval_table(tmp_path) is None
    assert runs.load_token_credit(run, 2) is None  # round 2 of the fixture has no credit


def test_damaged_file_is_a_user_error_naming_it(tmp_path):
    rdir = tmp_path / "round_1"
    rdir.mkdir()
    (rdir / "train_log.jsonl").write_text('{"step": 1, "loss": 0.7}\n{"step": 2, "loss"\n')
    (rdir / "pairs.parquet").write_text("not parquet")
    (rdir / "config.yaml").write_text("- a list\n- not a mapping\n")
    with pytest.raises(UserError, match=r"train_log\.jsonl: cannot be read .*line 2"):
        runs.load_train_log(tmp_path, 1)
    with pytest.raises(UserError, match=r"pairs\.parquet: cannot be read"):
        runs.load_pairs(tmp_path, 1)
    with pytest.raises(UserError, match=r"config\.yaml: cannot be read"):
        runs.load_config(tmp_path, 1)


def test_eval_table_flattens_and_tags_rounds(run):
    ev = runs.eval_table(run)
    assert list(ev["round"]) == [0, 1]
    assert list(ev["win_rate"]) == [40.0, 55.0]
    assert list(ev["judge.model"]) == ["toy-judge", "toy-judge"]
    assert set(ev["name"]) == {"alpaca"}


def test_pair_table_derives_missing_columns_from_samples(run):
    """Round 2's pairs.parquet has only the contract's columns: lengths and rewards come from samples."""
    samples = runs.load_samples(run, 2)
    full = runs.pair_table(runs.load_pairs(run, 2), samples, "chars")
    gen = full[full["source"] == "generated"]
    s = samples.set_index(["prompt_id", "sample_id"])
    for _, r in gen.iterrows():
        c, j = s.loc[(r["prompt_id"], r["chosen_sample_id"])], s.loc[(r["prompt_id"], r["rejected_sample_id"])]
        assert r["chosen_length"] == c["n_chars"] and r["rejected_length"] == j["n_chars"]
        assert r["len_diff"] == c["n_chars"] - j["n_chars"]
        assert r["reward_margin"] == pytest.approx(c["reward"] - j["reward"])
        assert r["judge_agrees"] == (c["judge_quality"] > j["judge_quality"])
    off = full[full["source"] == "offline"]
    assert list(off["chosen_length"]) == list(off["chosen"].str.len())  # chars of the text
    assert off["reward_margin"].isna().all() and off["judge_agrees"].isna().all()
    assert "judge_agrees" not in runs.pair_table(runs.load_pairs(run, 1), runs.load_samples(run, 1))


def test_pair_table_keeps_written_columns(run):
    """Round 1's pairs.parquet carries the lengths and rewards the pair builder writes."""
    pairs = runs.load_pairs(run, 1)
    bogus = pairs.assign(chosen_length=1.0, rejected_length=3.0)
    out = runs.pair_table(bogus, runs.load_samples(run, 1))
    assert (out["len_diff"] == -2.0).all()
    p0 = out[out["prompt_id"] == "p0"].iloc[0]
    # α = 0.007: chosen sample 1 (3.0 − 0.7 = 2.3), rejected sample 3 (−2.0 − 2.1 = −4.1)
    assert p0["reward_lr_margin"] == pytest.approx(2.3 - (-4.1))
    assert p0["reward_margin"] == pytest.approx(3.0 - (-2.0))
    written = runs.pair_table(runs.load_pairs(run, 2).assign(judge_agrees=True), runs.load_samples(run, 2))
    assert written["judge_agrees"].all()


def test_pair_table_in_tokens_without_samples(run):
    out = runs.pair_table(runs.load_pairs(run, 2).assign(chosen_sample_id=pd.NA), None, "tokens")
    assert out["chosen_length"].isna().all()  # no samples, no token counts: unknown, not guessed


def test_token_credit_sums_to_the_reward(run):
    credit = runs.load_token_credit(run, 1)
    samples = runs.load_samples(run, 1).set_index(["prompt_id", "sample_id"])
    assert list(credit.columns) == ["prompt_id", "sample_id", "token_ids", "tokens", "logratio"]
    for _, r in credit.iterrows():
        assert len(r["tokens"]) == len(r["logratio"]) == len(r["token_ids"])
        assert sum(r["logratio"]) == pytest.approx(samples.loc[(r["prompt_id"], r["sample_id"]), "reward"])
        assert "".join(r["tokens"]) == samples.loc[(r["prompt_id"], r["sample_id"]), "response"]


def test_pair_table_rejects_duplicate_samples(run):
    samples = runs.load_samples(run, 1)
    with pytest.raises(UserError, match="prompt_id 'p0', sample_id 0 appears more than once"):
        runs.pair_table(runs.load_pairs(run, 1), pd.concat([samples, samples.iloc[:1]]))


def test_dashboard_pairs_follow_a_diagnostic_written_later(tmp_path):
    """The cached pairs table is keyed on diagnostic_pairs.parquet too: `dicekit diagnose` run after
    the dashboard first read the round must show up."""
    from app.loaders import Round

    run = make_run_folder(tmp_path / "run")
    rnd = Round(str(run), 1)
    before, _ = rnd.pairs()
    assert "judge_agrees" not in before
    gen = before[before["source"] == "generated"]
    pd.DataFrame({"set": "pairs_alpha_star", "prompt_id": gen["prompt_id"],
                  "sample_id_a": gen["rejected_sample_id"].astype(int), "sample_id_b": gen["chosen_sample_id"].astype(int),
                  "preference": 1.0, "judge_agrees": True}).to_parquet(run / "round_1" / "diagnostic_pairs.parquet")
    after, _ = rnd.pairs()
    assert after.loc[after["source"] == "generated", "judge_agrees"].all()
