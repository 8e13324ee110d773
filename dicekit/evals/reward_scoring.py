"""Labelled pairs → token IDs → log-probs under a policy and a reference, through the round's scorer.

Token IDs are built exactly as the round stage builds those of offline pairs: the prompt rendered
once by the chat template (``dicekit.models.prompt_ids``), each reply encoded without special tokens
and closed by the end-of-turn token the sampler emits (``dicekit.models.response_ids``). Pairs that
already carry ``prompt_ids``/``chosen_ids``/``rejected_ids`` (a round's ``pairs.parquet``) are scored
on those IDs as they are. Log-probs come from ``dicekit.round.score.score_sequences`` (the one scorer) and
the reward from ``dicekit.core.objectives.implicit_reward`` (the one definition). One model in memory at
a time.

``layout="rewardbench"`` builds the IDs as RewardBench's DPO scoring (``scripts/run_dpo.py`` through
``rewardbench.dpo.DPOInference``) lays them out, for like-for-like comparison with published
RewardBench numbers (:func:`rewardbench_ids`). It differs from dicekit's layout in three ways, each
a departure from what the model sees when it samples: (1) a BOS token is put in front of a
templated prompt that already starts with the template's BOS (two BOS); (2) the assistant header
(e.g. ``<|im_start|>assistant\n``) is scored as part of the response, so its log-ratio is in the
reward; (3) ``tokenizer.eos_token`` is appended after the template's own end of turn (and whatever
the template puts after it), so a second end-of-turn token is scored. Its truncation of pairs longer
than 2,048 tokens (the prompt cut to its last 128) is not reproduced: such pairs are refused or
dropped by the context policy instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dicekit.errors import UserError

ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def has_ids(pairs: pd.DataFrame) -> bool:
    """True when every row carries its exact token IDs."""
    return all(c in pairs.columns and pairs[c].notna().all() for c in ID_COLUMNS)


LAYOUTS = ("dicekit", "rewardbench")


def rewardbench_ids(tok, prompt, reply: str) -> tuple[list[int], list[int]]:
    """(prompt IDs, response IDs) of one reply in RewardBench's DPO layout (see the module docstring):
    the conversation rendered without a generation prompt and with the reply, encoded without special
    tokens; the prompt is the rendering of the prompt alone (one token shorter where the reply merges
    into its last token), with BOS put in front; the response is the rest, ``eos_token`` appended."""
    from dicekit.models import as_messages

    messages = as_messages(prompt)
    prompt_text = tok.apply_chat_template(messages, tokenize=False)
    full_text = tok.apply_chat_template(messages + [{"role": "assistant", "content": reply}], tokenize=False)
    p = tok(prompt_text, add_special_tokens=False)["input_ids"]
    full = tok(full_text, add_special_tokens=False)["input_ids"]
    start = len(p) if full[:len(p)] == p else len(p) - 1
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + full[:start], full[start:] + [tok.eos_token_id]


def token_ids(tok, model, pairs: pd.DataFrame, eot: int | None = None,
              layout: str = "dicekit") -> tuple[list, list, list]:
    """(prompt IDs, chosen IDs, rejected IDs) per pair: as carried, or templated as the round does.

    ``model`` (or anything with a ``generation_config``) gives the stop tokens; ``eot`` overrides the
    end-of-turn token that closes each reply. ``layout="rewardbench"``: :func:`rewardbench_ids`
    (chosen and rejected share one prompt there, the chosen side's)."""
    from dicekit.models import end_of_turn_id, prompt_ids, response_ids, stop_token_ids

    if has_ids(pairs):
        out = tuple([list(map(int, x)) for x in pairs[c]] for c in ID_COLUMNS)
        top = max((max(x) for col in out for x in col if len(x)), default=-1)
        if top >= len(tok):
            raise UserError(f"token id {top} in the data is outside the vocabulary ({len(tok)} tokens) of "
                            f"{tok.name_or_path}; these IDs come from another tokenizer")
        return out
    if layout == "rewardbench":
        chosen = [rewardbench_ids(tok, x, c) for x, c in zip(pairs["prompt"], pairs["chosen"])]
        rejected = [rewardbench_ids(tok, x, r)[1] for x, r in zip(pairs["prompt"], pairs["rejected"])]
        return [c[0] for c in chosen], [c[1] for c in chosen], rejected
    if eot is None:
        eot = end_of_turn_id(tok, stop_token_ids(model, tok))
    p = [prompt_ids(tok, x) for x in pairs["prompt"]]
    c = [response_ids(tok, x, eot) for x in pairs["chosen"]]
    r = [response_ids(tok, x, eot) for x in pairs["rejected"]]
    return p, c, r


def check_same_vocab(tok, spec: str) -> None:
    """The implicit reward scores one token sequence under two models: they must share a vocabulary."""
    from dicekit.models import load_tokenizer

    other = load_tokenizer(spec)
    if other.get_vocab() != tok.get_vocab():
        raise UserError(f"{spec}: its tokenizer differs from the policy's; the implicit reward needs both "
                        "models to score the same token IDs")


def score_pairs(policy: str, reference: str, pairs: pd.DataFrame, *, length_unit: str = "chars",
                dtype: str = "float32", tokens_per_batch: int | None = None, quiet: bool = True,
                long_inputs: str = "error", layout: str = "dicekit", models=None) -> pd.DataFrame:
    """``pairs`` plus, per side s ∈ {chosen, rejected}: ``s_logp_policy``, ``s_logp_ref``, ``s_reward``
    (implicit reward, nats), ``s_n_tokens`` (response tokens, end-of-turn included) and ``s_length``
    (``length_unit``: characters of the reply text, or tokens).

    A pair whose prompt + longer reply exceeds the policy's context is an error naming its file:line
    (``pairs["where"]`` when given), or with ``long_inputs="drop"`` left out and counted in
    ``attrs["n_dropped_long"]``. ``layout``: "dicekit" (the round's IDs) or "rewardbench" (RewardBench's
    DPO layout, module docstring); pairs that carry their own IDs are always scored on them.
    ``models``: an object whose ``get(spec)`` returns (model, tokenizer) loaded in ``dtype`` (a round's
    holder of its one loaded model); then the reference is scored first and the policy last, so the
    holder ends with the policy, which the round needs next."""
    from dicekit.core.reward import implicit_reward
    from dicekit.data import within_limit
    from dicekit.models import context_length, end_of_turn_id, load_model, load_tokenizer, stop_token_ids_of
    from dicekit.round.score import score_sequences

    if length_unit not in ("chars", "tokens"):
        raise UserError(f"length unit must be 'chars' or 'tokens', got {length_unit!r}")
    tok = load_tokenizer(policy)
    check_same_vocab(tok, reference)  # both models and every length checked before any weights load
    if layout not in LAYOUTS:
        raise UserError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    eot = None if has_ids(pairs) or layout != "dicekit" else end_of_turn_id(tok, stop_token_ids_of(policy, tok))
    p_ids, c_ids, r_ids = token_ids(tok, None, pairs, eot=eot, layout=layout)
    need = [len(p) + max(len(c), len(r)) for p, c, r in zip(p_ids, c_ids, r_ids)]
    where = pairs["where"].tolist() if "where" in pairs else [f"pair {i + 1}" for i in range(len(pairs))]
    limit = context_length(policy)
    keep = within_limit(need, limit, long_inputs, lambda i: f"{where[i]}: prompt + reply",
                        hint="--long-inputs drop")
    n_long = len(keep) - sum(keep)
    if n_long:
        pairs = pairs[keep].reset_index(drop=True)
        p_ids, c_ids, r_ids = ([x for x, k in zip(ids, keep) if k] for ids in (p_ids, c_ids, r_ids))
        if pairs.empty:
            raise UserError(f"every pair is longer than the policy's context ({limit} tokens)")
    n = len(pairs)
    both_p, both_r = p_ids * 2, c_ids + r_ids

    def score(spec: str, label: str):
        model = models.get(spec)[0] if models is not None else load_model(spec, dtype=dtype, tokenizer=False)[0]
        return score_sequences(model, both_p, both_r, tokens_per_batch=tokens_per_batch, quiet=quiet, label=label)

    lp_ref = score(reference, "scoring pairs under reference")
    lp_pol = score(policy, "scoring pairs under policy")
    out = pairs.copy()
    for s, (lo, ids, text) in {"chosen": (0, c_ids, pairs["chosen"]), "rejected": (n, r_ids, pairs["rejected"])}.items():
        out[f"{s}_logp_policy"] = lp_pol[lo:lo + n]
        out[f"{s}_logp_ref"] = lp_ref[lo:lo + n]
        out[f"{s}_reward"] = implicit_reward(lp_pol[lo:lo + n], lp_ref[lo:lo + n])
        out[f"{s}_n_tokens"] = np.array([len(x) for x in ids], dtype=np.int64)
        out[f"{s}_length"] = (text.str.len().to_numpy(np.float64) if length_unit == "chars"
                              else out[f"{s}_n_tokens"].to_numpy(np.float64))
    out = out.drop(columns="where", errors="ignore")
    out.attrs["n_dropped_long"] = n_long
    return out
