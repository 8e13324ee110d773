"""Which ranker agrees with the preference labels? The paper's Table 5 comparison, on the same pairs.

Rankers, each giving both sides of a pair a score (a pair is ranked right iff chosen > rejected;
ties count as wrong, as in dicekit.evals.reward_accuracy):

* **implicit reward**: log π_policy − log π_ref, summed (dicekit.evals.reward_scoring), raw and
  length-regularised at α (reward − α·length, the paper's Eq. 5);
* **scalar reward model**: a Bradley–Terry RM trained on the same offline pairs (dicekit.analysis.rm);
* **LLM-as-judge**: the policy itself prompted to rate a response on an additive 0–5 scale, in the
  spirit of the paper's "Prompt" baseline (the prompt, ``JUDGE_PROMPT``, is dicekit's own). The score
  is the expected rating Σ k·p(k) / Σ p(k) over the next-token probabilities of the digits 0–5 right
  after the assistant turn opens — continuous, so ties are rare, and no text is generated. A
  tokenizer without single-token digits 0–5 cannot be asked (the row says so);
* **longer wins**: length(chosen) − length(rejected), the length-bias baseline.

Labelled pairs come from a file (``prompt``, ``chosen``, ``rejected``), or, for the task world, from
a round's ``samples.parquet``: :func:`oracle_pairs_from_samples` pairs samples of the same prompt
whose oracle quality differs (the better one is "chosen"), keeping their exact token IDs — the
agreement of the implicit reward with the truth on the policy's own samples, which decides whether
a DICE round can help.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dicekit.evals import reward_accuracy as RA

JUDGE_PROMPT = """Rate the response to the request below on an additive scale from 0 to 5. Start from 0 and:
- add 1 point if the response is on topic, even if it is incomplete or partly wrong;
- add 1 point if it addresses a substantial part of the request;
- add 1 point if it answers the basic request correctly;
- add 1 point if it is fully correct and complete: exactly what was asked, nothing missing;
- add 1 point if it is also clean and concise: no mistakes, no filler, nothing that was not asked for.

Request: {prompt}

Response: {response}

Reply with the total score only: one digit from 0 to 5."""
RATINGS = tuple(range(6))


class JudgeUnavailable(Exception):
    """The judge model's tokenizer cannot express the rating scale."""


def rating_token_ids(tok) -> list[int]:
    """Token ids of the digits 0–5; JudgeUnavailable unless each is one known token."""
    out = []
    for k in RATINGS:
        ids = tok(str(k), add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tok.unk_token_id:
            name = tok.name_or_path or "the judge tokenizer"
            raise JudgeUnavailable(f"{name}: the digit {k} is not a single token of its vocabulary")
        out.append(int(ids[0]))
    return out


def expected_rating(logits_at_ratings: np.ndarray) -> np.ndarray:
    """Σ k·p(k) over k = 0..5 with p renormalised over the six rating tokens; (N, 6) → (N,).

    Worked example: equal logits → 2.5; logits (0, 0, 0, 0, 0, +inf-ish) → 5.
    """
    z = np.asarray(logits_at_ratings, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p @ np.asarray(RATINGS, dtype=np.float64)


def judge_scores(model_spec: str, prompts: list, responses: list[str], *, dtype: str = "float32",
                 batch_size: int = 16) -> np.ndarray:
    """The judge's expected 0–5 rating of each (prompt, response) (see the module docstring)."""
    import torch

    from dicekit.data import prompt_key
    from dicekit.models import load_model, prompt_ids

    model, tok = load_model(model_spec, dtype=dtype)
    ratings = torch.tensor(rating_token_ids(tok), device=next(model.parameters()).device)
    seqs = [prompt_ids(tok, JUDGE_PROMPT.format(prompt=prompt_key(p), response=r)) for p, r in zip(prompts, responses)]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.zeros(len(seqs))
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    with torch.no_grad():
        order = np.argsort(-lengths, kind="stable")
        for idx in (order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)):
            width = int(lengths[idx].max())
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for b, i in enumerate(idx):
                ids[b, :lengths[i]] = torch.tensor(seqs[i])
                mask[b, :lengths[i]] = 1
            hidden = model.get_decoder()(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            last = hidden[torch.arange(len(idx)), torch.tensor(lengths[idx] - 1)]
            logits = head(last).float()
            out[idx] = expected_rating(logits[:, ratings].double().cpu().numpy())
    return out


def oracle_pairs_from_samples(samples: pd.DataFrame, quality, pairs_per_prompt: int = 2, seed: int = 0) -> pd.DataFrame:
    """Labelled pairs from one round's valid samples: per prompt, up to ``pairs_per_prompt`` random
    pairs of samples with different ``quality(prompt, response)``, the better one as chosen (seeded;
    no sample pair repeated). Keeps exact token IDs, both qualities and ``truth`` = +1. Prompts the
    quality function rejects (ValueError: not a prompt it knows) are skipped."""
    rng = np.random.default_rng(seed)
    valid = samples[samples["valid"]] if "valid" in samples else samples
    rows = []
    for pid, g in valid.sort_values(["prompt_id", "sample_id"]).groupby("prompt_id", sort=True):
        g = g.reset_index(drop=True)
        try:
            q = np.array([quality(p, r) for p, r in zip(g["prompt"], g["response"])], dtype=np.float64)
        except ValueError:
            continue
        i, j = np.triu_indices(len(g), k=1)
        keep = q[i] != q[j]
        i, j = i[keep], j[keep]
        if not len(i):
            continue
        pick = rng.permutation(len(i))[:pairs_per_prompt]
        for a, b in zip(i[pick], j[pick]):
            c, r = (a, b) if q[a] > q[b] else (b, a)
            rows.append({"prompt_id": pid, "prompt": g.at[c, "prompt"], "chosen": g.at[c, "response"],
                         "rejected": g.at[r, "response"], "prompt_ids": list(g.at[c, "prompt_ids"]),
                         "chosen_ids": list(g.at[c, "response_ids"]), "rejected_ids": list(g.at[r, "response_ids"]),
                         "chosen_sample_id": int(g.at[c, "sample_id"]), "rejected_sample_id": int(g.at[r, "sample_id"]),
                         "chosen_quality": float(q[c]), "rejected_quality": float(q[r]), "truth": 1.0})
    return pd.DataFrame(rows)


def ranker_row(name: str, chosen, rejected, truth=None, *, n_boot: int = 1000, seed: int = 0, note: str = "") -> dict:
    """Agreement of one ranker with the labels (and with ``truth`` on the pairs it decides)."""
    margin = np.asarray(chosen, dtype=np.float64) - np.asarray(rejected, dtype=np.float64)
    hits = RA.correct(margin)
    ci = RA.bootstrap_ci(hits, n_boot, seed)[0]
    row = {"ranker": name, "n_pairs": int(len(margin)), "accuracy": RA.accuracy(margin),
           "ci_low": RA.to_float(ci[0]), "ci_high": RA.to_float(ci[1]), "n_ties": int(np.sum(margin == 0)), "note": note}
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64)
        d = (t == 1) | (t == -1)
        row["truth_accuracy"] = RA.accuracy(margin[d] * t[d]) if d.any() else None
        row["n_truth_decided"] = int(d.sum())
    return row


def unavailable_row(name: str, n: int, note: str) -> dict:
    return {"ranker": name, "n_pairs": n, "accuracy": None, "ci_low": None, "ci_high": None, "n_ties": None, "note": note}


def compare(pairs: pd.DataFrame, *, policy: str, reference: str, rm_dir: str | None = None,
            judge_model: str | None = None, alpha: float = 0.0, length_unit: str = "chars",
            n_boot: int = 1000, seed: int = 0, dtype: str = "float32", quiet: bool = True) -> dict:
    """Score ``pairs`` with every ranker; one table row per ranker (see :func:`ranker_row`)."""
    from dicekit.evals.reward_scoring import score_pairs

    truth = pairs["truth"].to_numpy(np.float64) if "truth" in pairs else None
    kw = dict(n_boot=n_boot, seed=seed)
    s = score_pairs(policy, reference, pairs, length_unit=length_unit, dtype=dtype, quiet=quiet)
    m = RA.margins(s, alpha)
    n = len(pairs)
    rows = [ranker_row("implicit reward (DPO log-ratio)", m["dpo"], 0, truth, **kw),
            ranker_row(f"implicit reward, length-regularised (alpha={alpha:g})", m["lr"], 0, truth, **kw)]
    if rm_dir:
        from dicekit.analysis.rm import score_pairs_rm

        c, r = score_pairs_rm(rm_dir, pairs)
        rows.append(ranker_row("scalar reward model (offline pairs)", c, r, truth, note=str(rm_dir), **kw))
    else:
        rows.append(unavailable_row("scalar reward model (offline pairs)", n, "no reward model given (--rm)"))
    if judge_model:
        try:
            both = judge_scores(judge_model, list(pairs["prompt"]) * 2, list(pairs["chosen"]) + list(pairs["rejected"]),
                                dtype=dtype)
            rows.append(ranker_row("LLM-as-judge (policy, additive 0-5)", both[:n], both[n:], truth, note=judge_model, **kw))
        except JudgeUnavailable as e:
            rows.append(unavailable_row("LLM-as-judge (policy, additive 0-5)", n, str(e)))
    rows.append(ranker_row("longer wins", m["longer"], 0, truth, note=f"length in {length_unit}", **kw))
    return {"n_pairs": n, "policy": policy, "reference": reference, "alpha": float(alpha), "length_unit": length_unit,
            "n_boot": n_boot, "seed": seed, "judge_prompt": JUDGE_PROMPT, "rankers": rows}
