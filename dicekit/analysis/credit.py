"""Per-token credit: where a response earned or lost its implicit reward.

For a response y = (y_1 … y_n) to prompt x, token j's credit is
``log π_policy(y_j | x, y_<j) − log π_ref(y_j | x, y_<j)`` (dicekit.core.objectives.implicit_reward applied
per token), computed by the one scorer (dicekit.round.score.score_sequences, ``per_token=True``) on the
sample's exact token IDs, so the credits of a sample sum to its reward (up to float rounding).

:func:`write_token_credit` caches them in ``round_<t>/token_credit.parquet`` (schema in
dicekit.view.runs; rows keyed by ``prompt_id``/``sample_id``; rows already there are kept and not
recomputed), for the dashboard. The models are the round's reward models: ``policy`` (π_{t-1}) and
``reference`` (π_{t-2}) from its ``config.yaml``. ``tokens`` holds each token decoded on its own
(a character split across byte-level tokens shows as U+FFFD in each piece).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.view import runs
from dicekit.errors import UserError

COLUMNS = ["prompt_id", "sample_id", "token_ids", "tokens", "logratio"]


def token_logratios(policy: str, reference: str, prompt_ids: list, response_ids: list, *, dtype: str = "float32",
                    tokens_per_batch: int | None = None, quiet: bool = True) -> tuple[list[np.ndarray], object]:
    """Per-token log π_policy − log π_ref of each response (float64 arrays), and the policy's tokenizer."""
    from dicekit.evals.reward_scoring import check_same_vocab
    from dicekit.models import load_model
    from dicekit.core.reward import implicit_reward
    from dicekit.round.score import score_sequences

    model, tok = load_model(policy, dtype=dtype)
    _, pol = score_sequences(model, prompt_ids, response_ids, per_token=True, tokens_per_batch=tokens_per_batch,
                             quiet=quiet, label="per-token log-probs under policy")
    del model
    check_same_vocab(tok, reference)
    ref, _ = load_model(reference, dtype=dtype, tokenizer=False)
    _, rf = score_sequences(ref, prompt_ids, response_ids, per_token=True, tokens_per_batch=tokens_per_batch,
                            quiet=quiet, label="per-token log-probs under reference")
    return [implicit_reward(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(pol, rf)], tok


def select_prompts(run_dir, t: int, prompt_ids: list[str] | None, top: int | None) -> list[str]:
    """The prompts to explain: the given ids, or the ``top`` prompts whose generated pair has the
    largest reward margin (the round's sharpest decisions); without pairs, the first ``top`` prompts."""
    if prompt_ids:
        return list(dict.fromkeys(prompt_ids))
    pairs = runs.load_pairs(run_dir, t)
    if pairs is not None and "source" in pairs:
        gen = pairs[pairs["source"] == "generated"]
        margin = gen["chosen_reward_lr"] - gen["rejected_reward_lr"]
        order = gen.assign(margin=margin).sort_values(["margin", "prompt_id"], ascending=[False, True])
        return list(order["prompt_id"].astype(str).drop_duplicates().head(top))
    samples = runs.load_samples(run_dir, t, columns=["prompt_id"])
    return sorted(samples["prompt_id"].astype(str).unique())[:top]


def write_token_credit(run_dir, t: int, prompt_ids: list[str] | None = None, top: int | None = 20, *,
                       dtype: str = "float32", tokens_per_batch: int | None = None, quiet: bool = True) -> tuple[Path, int]:
    """Compute the credit of every valid sample of the chosen prompts (those not cached yet) and
    merge it into ``round_<t>/token_credit.parquet``. Returns (path, number of samples added)."""
    runs.check_run_dir(run_dir)
    cfg = runs.load_config(run_dir, t)
    if cfg is None or not cfg.get("policy") or not cfg.get("reference"):
        raise UserError(f"{rundir.round_dir(run_dir, t) / 'config.yaml'}: missing (or no 'policy'/'reference' in it)")
    if runs.load_samples(run_dir, t, columns=["prompt_id"]) is None:
        raise UserError(f"{run_dir}: round {t} has no samples.parquet")
    wanted = select_prompts(run_dir, t, prompt_ids, top)
    samples = runs.load_samples(run_dir, t, columns=["prompt_id", "sample_id", "prompt_ids", "response_ids", "valid"],
                                prompt_ids=wanted)
    unknown = sorted(set(wanted) - set(samples["prompt_id"].astype(str)))
    if unknown:
        raise UserError(f"{run_dir}: round {t} has no samples of prompt_id {unknown[0]!r}")
    samples = samples[samples["valid"].astype(bool)]
    path = rundir.round_dir(run_dir, t) / "token_credit.parquet"
    cached = runs.load_token_credit(run_dir, t)
    if cached is not None:
        have = set(zip(cached["prompt_id"].astype(str), cached["sample_id"].astype(int)))
        samples = samples[[(p, int(s)) not in have for p, s in zip(samples["prompt_id"], samples["sample_id"])]]
    if not len(samples):
        return path, 0
    samples = samples.sort_values(["prompt_id", "sample_id"]).reset_index(drop=True)
    p_ids = [list(map(int, x)) for x in samples["prompt_ids"]]
    r_ids = [list(map(int, x)) for x in samples["response_ids"]]
    credit, tok = token_logratios(cfg["policy"], cfg["reference"], p_ids, r_ids, dtype=dtype,
                                  tokens_per_batch=tokens_per_batch, quiet=quiet)
    new = pd.DataFrame({
        "prompt_id": samples["prompt_id"].astype(str), "sample_id": samples["sample_id"].astype(np.int64),
        "token_ids": r_ids, "tokens": [[tok.decode([i]) for i in ids] for ids in r_ids],
        "logratio": [c.tolist() for c in credit],
    })
    merged = new if cached is None else pd.concat([cached[COLUMNS], new], ignore_index=True)
    rundir.write_parquet(path, merged.sort_values(["prompt_id", "sample_id"]).reset_index(drop=True))
    return path, len(new)
