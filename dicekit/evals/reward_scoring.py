"""Labelled pairs → token IDs → log-probs under a policy and a reference, through the round's scorer.

Token IDs are built exactly as the round stage builds those of offline pairs: the prompt rendered
once by the chat template (``dicekit.models.prompt_ids``), each reply encoded without special tokens
and closed by the end-of-turn token the sampler emits (``dicekit.models.response_ids``). Pairs that
already carry ``prompt_ids``/``chosen_ids``/``rejected_ids`` (a round's ``pairs.parquet``) are scored
on those IDs as they are. Log-probs come from ``dicekit.round.score.score_sequences`` (the one scorer) and
the reward from ``dicekit.core.objectives.implicit_reward`` (the one definition). One model in memory at
a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dicekit.errors import UserError

ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def has_ids(pairs: pd.DataFrame) -> bool:
    """True when every row carries its exact token IDs."""
    return all(c in pairs.columns and pairs[c].notna().all() for c in ID_COLUMNS)


def token_ids(tok, model, pairs: pd.DataFrame, eot: int | None = None) -> tuple[list, list, list]:
    """(prompt IDs, chosen IDs, rejected IDs) per pair: as carried, or templated as the round does.

    ``model`` (or anything with a ``generation_config``) gives the stop tokens; ``eot`` overrides the
    end-of-turn token that closes each reply."""
    from dicekit.models import end_of_turn_id, prompt_ids, response_ids, stop_token_ids

    if has_ids(pairs):
        out = tuple([list(map(int, x)) for x in pairs[c]] for c in ID_COLUMNS)
        top = max((max(x) for col in out for x in col if len(x)), default=-1)
        if top >= len(tok):
            raise UserError(f"token id {top} in the data is outside the vocabulary ({len(tok)} tokens) of "
                            f"{tok.name_or_path}; these IDs come from another tokenizer")
        return out
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
                dtype: str = "float32", tokens_per_batch: int | None = None, quiet: bool = True) -> pd.DataFrame:
    """``pairs`` plus, per side s ∈ {chosen, rejected}: ``s_logp_policy``, ``s_logp_ref``, ``s_reward``
    (implicit reward, nats), ``s_n_tokens`` (response tokens, end-of-turn included) and ``s_length``
    (``length_unit``: characters of the reply text, or tokens)."""
    from dicekit.models import load_model
    from dicekit.core.reward import implicit_reward
    from dicekit.round.score import score_sequences

    if length_unit not in ("chars", "tokens"):
        raise UserError(f"length unit must be 'chars' or 'tokens', got {length_unit!r}")
    model, tok = load_model(policy, dtype=dtype)
    p_ids, c_ids, r_ids = token_ids(tok, model, pairs)
    n = len(pairs)
    both_p, both_r = p_ids * 2, c_ids + r_ids
    lp_pol = score_sequences(model, both_p, both_r, tokens_per_batch=tokens_per_batch, quiet=quiet,
                             label="scoring pairs under policy")
    del model
    check_same_vocab(tok, reference)
    ref, _ = load_model(reference, dtype=dtype, tokenizer=False)
    lp_ref = score_sequences(ref, both_p, both_r, tokens_per_batch=tokens_per_batch, quiet=quiet,
                             label="scoring pairs under reference")
    del ref
    out = pairs.copy()
    for s, (lo, ids, text) in {"chosen": (0, c_ids, pairs["chosen"]), "rejected": (n, r_ids, pairs["rejected"])}.items():
        out[f"{s}_logp_policy"] = lp_pol[lo:lo + n]
        out[f"{s}_logp_ref"] = lp_ref[lo:lo + n]
        out[f"{s}_reward"] = implicit_reward(lp_pol[lo:lo + n], lp_ref[lo:lo + n])
        out[f"{s}_n_tokens"] = np.array([len(x) for x in ids], dtype=np.int64)
        out[f"{s}_length"] = (text.str.len().to_numpy(np.float64) if length_unit == "chars"
                              else out[f"{s}_n_tokens"].to_numpy(np.float64))
    return out
