"""The dashboard's pure parts: filtering and paging the pairs table, ranking one prompt's samples at
an α, the α ranges that pick each pair, length differences per α, token-credit colouring.

pandas/numpy only, no Streamlit, so the tests call them directly. Which pair an α chooses is
decided by :func:`dicekit.core.pairs.select` (the function the pair builder uses), never recomputed
here; ``reward_lr = reward - alpha * length`` (Eq. 5) likewise comes from :mod:`dicekit.core.pairs`.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from dicekit.core import pairs as P
from dicekit.view.runs import sample_length

SEARCH_COLUMNS = ("prompt", "chosen", "rejected")


def search_index(pairs: pd.DataFrame) -> pd.Series:
    """Lower-cased prompt, chosen and rejected text of each pair, joined (built once, then cached)."""
    parts = [pairs[c].fillna("").astype(str).str.lower() for c in SEARCH_COLUMNS if c in pairs]
    out = parts[0]
    for part in parts[1:]:
        out = out + "\x00" + part
    return out


def filter_pairs(pairs: pd.DataFrame, *, sources=None, margin=None, margin_column: str = "reward_lr_margin",
                 len_diff=None, text: str = "", index: pd.Series | None = None,
                 judge_disagrees: bool = False) -> pd.DataFrame:
    """Rows of ``pairs`` passing every filter that is set (``None`` / empty = not set).

    ``sources``: allowed ``source`` values. ``margin`` / ``len_diff``: inclusive ``(lo, hi)`` on
    ``margin_column`` / ``len_diff``; rows where that value is null (offline pairs have no margin)
    fail a set range. ``text``: case-insensitive substring of prompt, chosen or rejected (``index``:
    the :func:`search_index` of ``pairs``, computed here when not given). ``judge_disagrees``: only
    pairs whose ``judge_agrees`` is False.
    """
    keep = np.ones(len(pairs), dtype=bool)
    if sources is not None:
        keep &= pairs["source"].isin(list(sources)).to_numpy()
    for rng, col in ((margin, margin_column), (len_diff, "len_diff")):
        if rng is not None:
            v = pairs[col].to_numpy(dtype=np.float64, na_value=np.nan)
            keep &= (v >= rng[0]) & (v <= rng[1])
    if judge_disagrees and "judge_agrees" in pairs:
        keep &= (pairs["judge_agrees"] == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    text = text.strip().lower()
    if text:
        idx = search_index(pairs) if index is None else index
        keep &= idx.str.contains(text, regex=False).to_numpy(dtype=bool)
    return pairs[keep]


def sort_pairs(df: pd.DataFrame, by: str | None, ascending: bool = True) -> pd.DataFrame:
    """``df`` sorted by column ``by`` (stable, nulls last); unchanged when ``by`` is None."""
    return df if not by else df.sort_values(by, ascending=ascending, kind="stable", na_position="last")


def page(df: pd.DataFrame, number: int, size: int) -> tuple[pd.DataFrame, int]:
    """Page ``number`` (1-based, clamped to [1, n_pages]) of ``size`` rows; returns (rows, n_pages)."""
    n_pages = max(1, math.ceil(len(df) / size))
    number = min(max(1, number), n_pages)
    return df.iloc[(number - 1) * size:number * size], n_pages


def _dup_keys(samples: pd.DataFrame) -> np.ndarray | None:
    """Equal keys for samples with identical response token IDs (as the pair builder uses)."""
    if "response_ids" not in samples:
        return None
    return pd.factorize(samples["response_ids"].map(lambda x: ",".join(map(str, x))))[0]


def _usable(samples: pd.DataFrame) -> np.ndarray:
    """Samples that take part in pairing: valid and scored."""
    ok = samples["reward"].notna().to_numpy(dtype=bool, copy=True)
    if "valid" in samples:
        ok &= samples["valid"].fillna(False).to_numpy(dtype=bool)
    return ok


def _one_group(samples: pd.DataFrame, unit: str) -> tuple[np.ndarray, P.Groups]:
    """One prompt's usable samples packed as a single group; returns (their sample_ids, groups)."""
    v = samples[_usable(samples)]
    groups = P.pack(np.zeros(len(v), dtype=np.int64), v["sample_id"].to_numpy(), v["reward"].to_numpy(),
                    sample_length(v, unit).to_numpy(), _dup_keys(v))
    return v["sample_id"].to_numpy(dtype=np.int64), groups


def _pair(sample_ids: np.ndarray, groups: P.Groups, alpha: float) -> dict:
    if groups.reward.size == 0:
        return {"chosen": None, "rejected": None, "degenerate": False}
    sel = P.select(groups, alpha)
    return {"chosen": int(sample_ids[groups.row[0, sel.chosen_col[0]]]),
            "rejected": int(sample_ids[groups.row[0, sel.rejected_col[0]]]),
            "degenerate": not bool(sel.keep[0])}


def rank_samples(samples: pd.DataFrame, alpha: float, unit: str) -> tuple[pd.DataFrame, dict]:
    """One prompt's samples ranked by ``reward_lr`` at ``alpha``, with the pair α would build.

    Returns the samples sorted by reward_lr (invalid ones last, unranked) with columns ``rank``,
    ``length``, ``reward_lr`` and ``role`` (``chosen`` / ``rejected`` / ``""`` / ``invalid``), and a
    dict ``{chosen, rejected, degenerate}`` of sample_ids (None when no sample is usable). A
    degenerate pair (equal scores or identical responses) is one the pair builder drops.
    """
    df = samples.copy()
    df["length"] = sample_length(df, unit)
    ok = _usable(df)
    score = P.reward_lr(df["reward"].to_numpy(dtype=np.float64, na_value=np.nan), df["length"].to_numpy(), alpha)
    df["reward_lr"] = np.where(ok, score, np.nan)
    pair = _pair(*_one_group(df, unit), alpha)
    df["role"] = np.where(ok, "", "invalid")
    if pair["chosen"] is not None:
        df.loc[df["sample_id"] == pair["rejected"], "role"] = "rejected"
        df.loc[df["sample_id"] == pair["chosen"], "role"] = "chosen"
    df = df.sort_values(["reward_lr", "sample_id"], ascending=[False, True], na_position="last", kind="stable")
    df["rank"] = pd.array(np.where(df["reward_lr"].notna(), np.arange(1, len(df) + 1), None), dtype="Int64")
    return df, pair


def alpha_regions(samples: pd.DataFrame, alphas, unit: str) -> pd.DataFrame:
    """Contiguous runs of ``alphas`` that choose the same (chosen, rejected) pair for one prompt.

    Columns: ``alpha_from``, ``alpha_to`` (grid values, inclusive), ``chosen``, ``rejected``
    (sample_ids), ``degenerate``."""
    sample_ids, groups = _one_group(samples, unit)
    rows = []
    for a in np.asarray(alphas, dtype=np.float64):
        pair = _pair(sample_ids, groups, float(a))
        key = [pair["chosen"], pair["rejected"], pair["degenerate"]]
        if rows and rows[-1][2:] == key:
            rows[-1][1] = float(a)
        else:
            rows.append([float(a), float(a), *key])
    return pd.DataFrame(rows, columns=["alpha_from", "alpha_to", "chosen", "rejected", "degenerate"])


def len_diffs_at(samples: pd.DataFrame, alphas, unit: str) -> pd.DataFrame:
    """length(chosen) − length(rejected) of every kept best-vs-worst pair, for each α in ``alphas``.

    ``samples``: all of a round's samples (``prompt_id``, ``sample_id``, ``reward``, ``valid``,
    ``n_chars``/``n_tokens``). Identical responses have equal scores, so they are dropped as
    degenerate without their token IDs. Returns long-form columns ``alpha``, ``len_diff``."""
    v = samples[_usable(samples)]
    length = sample_length(v, unit).to_numpy()
    groups = P.pack(v["prompt_id"].to_numpy(), v["sample_id"].to_numpy(), v["reward"].to_numpy(), length)
    frames = []
    for a in alphas:
        sel = P.select(groups, float(a))
        g = np.flatnonzero(sel.keep)
        diff = groups.length[g, sel.chosen_col[g]] - groups.length[g, sel.rejected_col[g]]
        frames.append(pd.DataFrame({"alpha": float(a), "len_diff": diff}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["alpha", "len_diff"])


def histograms(diffs: pd.DataFrame, bins: int = 40) -> pd.DataFrame:
    """Counts of ``len_diff`` per ``alpha`` on shared bin edges (what a chart needs, not 100k rows).

    Columns: ``alpha``, ``lo``, ``hi`` (bin edges), ``count``."""
    values = diffs["len_diff"].to_numpy(dtype=np.float64)
    if len(values) == 0:
        return pd.DataFrame(columns=["alpha", "lo", "hi", "count"])
    edges = np.histogram_bin_edges(values, bins=bins)
    frames = [pd.DataFrame({"alpha": a, "lo": edges[:-1], "hi": edges[1:],
                            "count": np.histogram(g["len_diff"].to_numpy(dtype=np.float64), edges)[0]})
              for a, g in diffs.groupby("alpha", sort=True)]
    return pd.concat(frames, ignore_index=True)


def credit_html(tokens, logratio) -> str:
    """Tokens coloured by their log-ratio (green > 0, red < 0, intensity ∝ |x| / max |x|).

    Every token is HTML-escaped: text from a model is displayed, never interpreted."""
    values = np.asarray(logratio, dtype=np.float64)
    scale = float(np.nanmax(np.abs(values))) if len(values) else 0.0
    spans = []
    for tok, x in zip(tokens, values):
        a = 0.0 if not scale or not np.isfinite(x) else min(1.0, abs(x) / scale)
        rgb = "0,160,60" if x >= 0 else "220,40,40"
        spans.append(f'<span title="{x:+.3f}" style="background: rgba({rgb},{a * 0.8:.2f})">'
                     f"{html.escape(str(tok), quote=True)}</span>")
    return ('<div style="font-family: monospace; white-space: pre-wrap; line-height: 1.6">'
            + "".join(spans) + "</div>")
