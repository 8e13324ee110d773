"""Cached reads of run folders for the dashboard (through :mod:`dicekit.view.runs`, never the writers).

Each loader takes the modification time of its file as an argument (hashed into the cache key), so a file that a running round
rewrites is read again. Small things go through ``st.cache_data`` (a copy per call). The pairs
table, its search index and the per-sample numbers can hold 100k+ rows of text; copying them on
every rerun would make each click slow, so they are cached once with ``st.cache_resource`` and
must be treated as read-only (every filter returns a new frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from app import tables as T
from dicekit.view import runs

# per-sample numbers: what the tables and histograms need, without the texts and token-ID lists
SAMPLE_NUMBERS = ["prompt_id", "sample_id", "n_tokens", "n_chars", "finish_reason", "reward", "valid", "judge_quality"]


def _mtime(run: str, t: int, name: str) -> int | None:
    """Modification time (ns) of ``round_<t>/<name>``, or None when absent."""
    path = runs.round_dir(run, t) / name
    return path.stat().st_mtime_ns if path.exists() else None


def _sample_columns(run: str, t: int) -> list[str]:
    import pyarrow.parquet as pq

    names = set(pq.read_schema(runs.round_dir(run, t) / "samples.parquet").names)
    return [c for c in SAMPLE_NUMBERS if c in names]


@st.cache_data(show_spinner=False)
def _config(run: str, t: int, mtime) -> dict:
    return runs.load_config(run, t) or {}


@st.cache_data(show_spinner=False)
def _metrics(run: str, t: int, mtime) -> dict | None:
    return runs.load_metrics(run, t)


@st.cache_data(show_spinner=False)
def _alpha_sweep(run: str, t: int, mtime) -> pd.DataFrame | None:
    return runs.load_alpha_sweep(run, t)


@st.cache_data(show_spinner=False)
def _train_log(run: str, t: int, mtime) -> pd.DataFrame | None:
    return runs.load_train_log(run, t)


@st.cache_data(show_spinner=False)
def _evals(run: str, mtimes) -> pd.DataFrame | None:
    return runs.eval_table(run)


@st.cache_data(show_spinner=False)
def _token_credit(run: str, t: int, mtime) -> pd.DataFrame | None:
    return runs.load_token_credit(run, t)


@st.cache_data(show_spinner=False, max_entries=32)
def _len_diff_hist(run: str, t: int, mtime, alphas: tuple[float, ...], unit: str) -> pd.DataFrame:
    return T.histograms(T.len_diffs_at(_sample_numbers(run, t, mtime), alphas, unit))


@st.cache_data(show_spinner=False, max_entries=64)
def _prompt_samples(run: str, t: int, prompt_id: str, mtime) -> pd.DataFrame | None:
    """All columns of one prompt's samples (texts and token IDs included)."""
    return runs.load_samples(run, t, prompt_ids=[prompt_id])


@st.cache_resource(show_spinner=False, max_entries=8)
def _sample_numbers(run: str, t: int, mtime) -> pd.DataFrame | None:
    """Every sample's numbers (read-only)."""
    if mtime is None:
        return None
    return runs.load_samples(run, t, columns=_sample_columns(run, t))


@st.cache_resource(show_spinner="Loading pairs…", max_entries=8)
def _pair_table(run: str, t: int, mtimes, unit: str) -> tuple[pd.DataFrame, pd.Series] | None:
    """The round's pairs with derived columns, and their search index (both read-only)."""
    pairs = runs.load_pairs(run, t)
    if pairs is None:
        return None
    df = runs.pair_table(pairs, _sample_numbers(run, t, mtimes[1]), unit)
    return df, T.search_index(df)


def _eval_mtimes(run: str) -> tuple:
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in Path(run).glob("round_*/evals/*.json")))


@dataclass(frozen=True)
class Round:
    """One round of one run, as the dashboard reads it (every getter cached, None when absent)."""

    run: str
    t: int

    def _m(self, name: str):
        return _mtime(self.run, self.t, name)

    def config(self) -> dict:
        return _config(self.run, self.t, self._m("config.yaml"))

    @property
    def unit(self) -> str:
        return self.config().get("length_unit", "chars")

    def metrics(self) -> dict | None:
        return _metrics(self.run, self.t, self._m("metrics.json"))

    def alpha_sweep(self) -> pd.DataFrame | None:
        return _alpha_sweep(self.run, self.t, self._m("alpha_sweep.csv"))

    def train_log(self) -> pd.DataFrame | None:
        return _train_log(self.run, self.t, self._m("train_log.jsonl"))

    def token_credit(self) -> pd.DataFrame | None:
        return _token_credit(self.run, self.t, self._m("token_credit.parquet"))

    def evals(self) -> pd.DataFrame | None:
        """Evaluations of every round of the run (not only this one)."""
        return _evals(self.run, _eval_mtimes(self.run))

    def samples(self) -> pd.DataFrame | None:
        return _sample_numbers(self.run, self.t, self._m("samples.parquet"))

    def len_diff_histograms(self, alphas) -> pd.DataFrame:
        """Histograms of length(chosen) − length(rejected) of the pairs each α would build."""
        return _len_diff_hist(self.run, self.t, self._m("samples.parquet"), tuple(sorted(alphas)), self.unit)

    def prompt_samples(self, prompt_id: str) -> pd.DataFrame | None:
        m = self._m("samples.parquet")
        return None if m is None else _prompt_samples(self.run, self.t, prompt_id, m)

    def pairs(self) -> tuple[pd.DataFrame, pd.Series] | tuple[None, None]:
        # diagnostic_pairs.parquet (judge agreement, merged in by runs.load_pairs) may be written later
        mtimes = (self._m("pairs.parquet"), self._m("samples.parquet"), self._m("diagnostic_pairs.parquet"))
        out = _pair_table(self.run, self.t, mtimes, self.unit)
        return out if out is not None else (None, None)
