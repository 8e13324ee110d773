"""Figures of a run folder (matplotlib, Agg backend). Pure readers: never torch, never the trainer.

* :func:`length_diff_by_alpha` recomputes, from ``samples.parquet``, the best-vs-worst pairs each α
  would select — through ``dicekit.core.pairs.select``, the round's own selection — and returns
  length(chosen) − length(rejected) per pair; :func:`length_diff_figure` draws one histogram per α
  with its mean marked, plus the offline pairs' distribution (the paper's Figure 2).
* :func:`alpha_sweep_figure`: mean length difference vs α from ``alpha_sweep.csv``, α* marked.
* :func:`win_rate_figure`, :func:`training_figure`, :func:`reward_accuracy_figure`: the report's
  per-round views; :func:`ifeval_figure`: IFEval accuracies per evaluated model.

Every figure function takes plain data and a path, writes one PNG and returns the path.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit.core import pairs as P
from dicekit.view import runs
from dicekit.errors import UserError

_ALPHA_TERM = re.compile(r"^\s*(?:([0-9.eE+-]+)\s*\*\s*)?(ALPHA\*|A\*)\s*$", re.IGNORECASE)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parse_alphas(spec: str, alpha_star: float | None) -> list[float]:
    """``"0,ALPHA*,2*ALPHA*"`` → [0, α*, 2α*]. Terms: a number, ``ALPHA*`` or ``k*ALPHA*``."""
    out = []
    for term in spec.split(","):
        if not term.strip():
            continue
        m = _ALPHA_TERM.match(term)
        try:
            if m:
                if alpha_star is None:
                    raise UserError(f"--alphas {spec!r}: this round records no alpha* to substitute")
                out.append(float(m.group(1) or 1.0) * float(alpha_star))
            else:
                out.append(float(term))
        except ValueError:
            raise UserError(f"--alphas {spec!r}: {term.strip()!r} is not a number, ALPHA* or k*ALPHA*") from None
    if not out or any(a < 0 for a in out):
        raise UserError(f"--alphas {spec!r}: expected non-negative values")
    return out


def round_alpha_star(run_dir, t: int) -> float | None:
    """α* of round t: metrics.json's ``alpha_star``, else config.yaml's ``alpha``, else the sweep's argmin."""
    metrics = runs.load_metrics(run_dir, t) or {}
    if metrics.get("alpha_star") is not None:
        return float(metrics["alpha_star"])
    cfg = runs.load_config(run_dir, t) or {}
    if cfg.get("alpha") is not None:
        return float(cfg["alpha"])
    sweep = runs.load_alpha_sweep(run_dir, t)
    if sweep is not None and sweep["mean_len_diff"].notna().any():
        return float(sweep["alpha"].iloc[int(np.nanargmin(np.abs(sweep["mean_len_diff"].to_numpy())))])
    return None


def pack_samples(samples: pd.DataFrame, unit: str) -> P.Groups:
    """Valid samples packed per prompt, as the round packs them (dicekit.core.pairs.pack_valid)."""
    return P.pack_valid(samples, unit)[1]


def length_diff_by_alpha(samples: pd.DataFrame, alphas, unit: str = "chars") -> dict[float, np.ndarray]:
    """{α: length(chosen) − length(rejected) of each kept best-vs-worst pair at α} (dicekit.core.pairs.select)."""
    groups = pack_samples(samples, unit)
    out = {}
    for a in alphas:
        sel = P.select(groups, float(a))
        g = np.flatnonzero(sel.keep)
        out[float(a)] = groups.length[g, sel.chosen_col[g]] - groups.length[g, sel.rejected_col[g]]
    return out


def offline_length_diff(pairs: pd.DataFrame | None, unit: str = "chars") -> np.ndarray | None:
    """length(chosen) − length(rejected) of a round's offline pairs (None when there are none)."""
    if pairs is None or "source" not in pairs:
        return None
    off = pairs[pairs["source"] == "offline"]
    if not len(off):
        return None
    if "chosen_length" in off and off["chosen_length"].notna().all():
        return (off["chosen_length"] - off["rejected_length"]).to_numpy(np.float64)
    if unit == "chars":
        return (off["chosen"].str.len() - off["rejected"].str.len()).to_numpy(np.float64)
    if "chosen_ids" in off:
        return (off["chosen_ids"].map(len) - off["rejected_ids"].map(len)).to_numpy(np.float64)
    return None


def _label(alpha: float, alpha_star: float | None) -> str:
    if alpha_star:
        k = alpha / alpha_star
        if np.isclose(k, 1.0):
            return f"α* = {alpha:.4g}"
        if np.isclose(k, round(k)) and alpha > 0:
            return f"α = {int(round(k))}α* = {alpha:.4g}"
    return f"α = {alpha:.4g}"


def length_diff_figure(diffs: dict[float, np.ndarray], path, *, offline: np.ndarray | None = None,
                       alpha_star: float | None = None, unit: str = "chars", title: str = "") -> Path:
    """One histogram per α (+ one for the offline pairs), shared bins, each mean marked."""
    plt = _plt()
    panels = [(_label(a, alpha_star), d) for a, d in diffs.items()]
    if offline is not None and len(offline):
        panels.append(("offline pairs", offline))
    allv = np.concatenate([d for _, d in panels if len(d)]) if any(len(d) for _, d in panels) else np.zeros(1)
    bins = np.histogram_bin_edges(allv, bins=min(40, max(5, int(np.sqrt(len(allv))) * 2)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), sharex=True, squeeze=False)
    for ax, (name, d) in zip(axes[0], panels):
        color = "tab:gray" if name == "offline pairs" else "tab:blue"
        ax.hist(d, bins=bins, color=color, alpha=0.8)
        ax.axvline(0, color="black", lw=0.8)
        if len(d):
            mean = float(np.mean(d))
            ax.axvline(mean, color="tab:red", ls="--", lw=1.5)
            ax.set_title(f"{name}\nmean {mean:+.1f}, {len(d)} pairs", fontsize=9)
        else:
            ax.set_title(f"{name}\nno pairs", fontsize=9)
        ax.set_xlabel(f"len(chosen) − len(rejected) [{unit}]", fontsize=8)
    axes[0][0].set_ylabel("pairs")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, plt)


def alpha_sweep_figure(sweep: pd.DataFrame, path, *, alpha_star: float | None = None, unit: str = "chars",
                       title: str = "") -> Path:
    """Mean length difference of the selected pairs vs α, zero line and α* marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(sweep["alpha"], sweep["mean_len_diff"], color="tab:blue", lw=1.5)
    ax.axhline(0, color="black", lw=0.8)
    if alpha_star is not None:
        row = sweep.iloc[int(np.argmin(np.abs(sweep["alpha"].to_numpy() - alpha_star)))]
        ax.axvline(alpha_star, color="tab:red", ls="--", lw=1.2)
        ax.plot([row["alpha"]], [row["mean_len_diff"]], "o", color="tab:red", label=f"α* = {alpha_star:.4g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("α (per " + ("character" if unit == "chars" else "token") + ")")
    ax.set_ylabel(f"mean len(chosen) − len(rejected) [{unit}]", fontsize=8)
    ax.set_title(title or "α sweep", fontsize=10)
    return _save(fig, path, plt)


def win_rate_figure(evals: pd.DataFrame, path) -> Path:
    """Win rate (and LC win rate) and average length per round, one line per eval file name."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, g in evals.sort_values("round").groupby("name", sort=True):
        for col, ls in (("win_rate", "-"), ("length_controlled_winrate", "--")):
            if col in g and g[col].notna().any():
                a1.plot(g["round"], g[col], ls, marker="o", label=f"{name} {col.replace('_', ' ')}")
        for col in ("avg_length", "mean_length", "length"):
            if col in g and g[col].notna().any():
                a2.plot(g["round"], g[col], marker="o", label=f"{name} {col.replace('_', ' ')}")
                break
    a1.set_xlabel("round (policy π_t)")
    a1.set_ylabel("win rate (%)")
    a2.set_xlabel("round (policy π_t)")
    a2.set_ylabel("length")
    for ax in (a1, a2):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=7)
    return _save(fig, path, plt)


def training_figure(logs: dict[int, pd.DataFrame], path) -> Path:
    """DPO loss and training reward accuracy per step, one line per round."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for t, log in sorted(logs.items()):
        steps = log[log["loss"].notna()] if "loss" in log else log.iloc[:0]
        if len(steps):
            a1.plot(steps["step"], steps["loss"], label=f"round {t}")
        if "rewards/accuracies" in steps and steps["rewards/accuracies"].notna().any():
            a2.plot(steps["step"], steps["rewards/accuracies"], label=f"round {t}")
    a1.set_ylabel("DPO loss")
    a2.set_ylabel("reward accuracy (training batches)")
    for ax in (a1, a2):
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, path, plt)


def reward_accuracy_figure(table: pd.DataFrame, path, *, label_col: str = "label") -> Path:
    """Horizontal bars: accuracy with its 95% interval, one bar per row of ``table``
    (columns ``label_col``, ``accuracy``, ``ci_low``, ``ci_high``; accuracy in [0, 1])."""
    plt = _plt()
    t = table[table["accuracy"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * max(len(t), 2) + 1))
    y = np.arange(len(t))[::-1]
    acc = 100 * t["accuracy"].to_numpy(np.float64)
    lo = 100 * t["ci_low"].astype("float64").fillna(t["accuracy"]).to_numpy()
    hi = 100 * t["ci_high"].astype("float64").fillna(t["accuracy"]).to_numpy()
    ax.barh(y, acc, xerr=[acc - lo, hi - acc], color="tab:blue", alpha=0.8, capsize=3)
    ax.axvline(50, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, t[label_col], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%), 95% bootstrap interval")
    return _save(fig, path, plt)


IFEVAL_BARS = (("prompt_level_strict", "prompt strict"), ("inst_level_strict", "instruction strict"),
               ("prompt_level_loose", "prompt loose"), ("inst_level_loose", "instruction loose"))


def ifeval_figure(rows: list[dict], path) -> Path:
    """IFEval accuracy per model: four bars (prompt/instruction level, strict/loose) with ±1
    standard error, one group per row (``name`` + the ``*_acc``/``*_se`` fields of
    ``dicekit eval ifeval``'s metrics.json; accuracies in [0, 1], drawn in %)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(rows) + 2), 3.4))
    x = np.arange(len(rows))
    width = 0.8 / len(IFEVAL_BARS)
    for k, (key, label) in enumerate(IFEVAL_BARS):
        acc = np.array([100 * float(r[f"{key}_acc"]) for r in rows])
        se = np.array([100 * float(r.get(f"{key}_se") or 0.0) for r in rows])
        ax.bar(x + (k - 1.5) * width, acc, width, yerr=se, capsize=2, label=label)
    ax.set_xticks(x, [r["name"] for r in rows], fontsize=8)
    ax.set_ylabel("IFEval accuracy (%), ±1 SE")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path, plt)


def _save(fig, path, plt) -> Path:
    from dicekit.rundir import atomic_path

    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_length_diff(run_dir, t: int, alphas: str = "0,ALPHA*,2*ALPHA*", out_dir=None) -> dict:
    """The length-difference figures of round t: ``length_diff_round<t>.png`` (histograms per α +
    offline pairs) and ``alpha_sweep_round<t>.png``, written to ``out_dir`` (default
    ``RUN_DIR/report``). Returns ``{alphas, means, n_pairs, offline_mean, alpha_star, files}``."""
    runs.check_run_dir(run_dir)
    samples = runs.load_samples(run_dir, t, columns=["prompt_id", "sample_id", "response_ids", "n_chars",
                                                     "n_tokens", "reward", "valid"])
    if samples is None:
        raise UserError(f"{run_dir}: round {t} has no samples.parquet")
    cfg = runs.load_config(run_dir, t) or {}
    unit = cfg.get("length_unit", "chars")
    star = round_alpha_star(run_dir, t)
    values = parse_alphas(alphas, star)
    diffs = length_diff_by_alpha(samples, values, unit)
    offline = offline_length_diff(runs.load_pairs(run_dir, t), unit)
    out = Path(out_dir) if out_dir else Path(run_dir) / "report"
    files = [length_diff_figure(diffs, out / f"length_diff_round{t}.png", offline=offline, alpha_star=star, unit=unit,
                                title=f"round {t}: length difference of best-vs-worst pairs")]
    sweep = runs.load_alpha_sweep(run_dir, t)
    if sweep is not None and len(sweep):
        files.append(alpha_sweep_figure(sweep, out / f"alpha_sweep_round{t}.png", alpha_star=star, unit=unit,
                                        title=f"round {t}: α sweep"))
    return {"alphas": values, "means": [float(np.mean(d)) if len(d) else None for d in diffs.values()],
            "n_pairs": [int(len(d)) for d in diffs.values()],
            "offline_mean": float(np.mean(offline)) if offline is not None and len(offline) else None,
            "alpha_star": star, "unit": unit, "files": [str(f) for f in files]}
