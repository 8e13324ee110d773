"""Judge-free round monitor: will this round help? Pure numpy/pandas, no I/O, no model, no oracle.

A DICE round trains on pairs its own implicit reward r_t = log π_{t−1} − log π_{t−2} picked from
π_{t−1}'s samples; it can only help if that reward still ranks those samples by quality. A judge
measures that (dicekit diagnose); these signals use only what a round already has — its samples,
their log-probs, the labelled offline pairs — or one extra forward pass:

* ``heldout_accuracy``: the round's reward (DPO sum, and length-regularised at the round's α) on
  labelled pairs it does not train on (``health_pairs``; default a slice of the offline pairs):
  share ranked like the label, ties wrong (dicekit.evals.reward_accuracy, the one definition).
  Chance = 0.5.
* ``heldout_dpo``: the same held-out pairs ranked by the plain DPO sum r_t (no length term) — the
  round's reward before α; taken from the same scoring pass (free).
* ``consistency`` (CREAM, arXiv 2410.12735): within each prompt, how often this round's reward
  orders two of its samples like the previous round's reward r_{t−1} = log π_{t−2} − log π_{t−3}
  does (:func:`pair_agreement_by_group`; needs the samples scored under π_{t−3}; none in round 1).
  Mean over prompts; chance = 0.5, identical rankings = 1, reversed = 0; Kendall τ = 2·agreement − 1.
* ``variant_agreement``: on the round's best-vs-worst pairs, the share the length-normalised average
  log-prob (``avg``) and the reference-free sum (``ref_free``) order like the reward that picked them
  (margins from dicekit.evals.reward_accuracy.margins; ties wrong). Free: no extra pass.

Every signal carries a 95% percentile-bootstrap interval (dicekit.evals.reward_accuracy.bootstrap_ci;
over pairs, or over prompts for ``consistency``) and its count; a signal with nothing to measure is
``None`` (value) with its reason. :func:`gate_decision` turns one signal into the round's gate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dicekit.evals.reward_accuracy import accuracy, bootstrap_ci, correct, margins, to_float

SIGNALS = ("heldout_accuracy", "heldout_dpo", "consistency", "variant_agreement")


def interval(hits, n_boot: int = 1000, seed: int = 0) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap interval of the mean of ``hits`` (None below two values)."""
    lo, hi = bootstrap_ci(np.asarray(hits, dtype=np.float64), n_boot, seed)[0]
    return to_float(lo), to_float(hi)


def pair_agreement_by_group(group, score, truth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: (keys, agreement, number of pairs) over its item pairs whose ``truth`` differs;
    ``score`` ordering them the same way counts 1, a ``score`` tie ½, the other way 0.

    Worked example, one group, score (1, 2, 3), truth (1, 2, 2): pairs (0,1) and (0,2) decided and
    agree, (1,2) a truth tie → agreement 1.0 over 2 pairs; score (3, 2, 1) → 0.0; score (1, 1, 3) → 0.75.
    Groups with no decided pair get agreement nan and 0 pairs.
    """
    df = pd.DataFrame({"g": np.asarray(group), "s": np.asarray(score, float), "t": np.asarray(truth, float)})
    keys, agree, count = [], [], []
    for key, g in df.groupby("g", sort=True):
        s, t = g["s"].to_numpy(), g["t"].to_numpy()
        ds = np.sign(s[:, None] - s[None, :])
        dt = np.sign(t[:, None] - t[None, :])
        upper = np.triu(np.ones_like(dt, dtype=bool), 1) & (dt != 0)
        n = int(upper.sum())
        hits = float((ds[upper] == dt[upper]).sum() + 0.5 * (ds[upper] == 0).sum())
        keys.append(key)
        agree.append(hits / n if n else np.nan)
        count.append(n)
    return np.asarray(keys), np.asarray(agree, dtype=np.float64), np.asarray(count, dtype=np.int64)


def unavailable(reason: str) -> dict:
    return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "reason": reason}


def consistency(group, current, previous, n_boot: int = 1000, seed: int = 0) -> dict:
    """Ranking agreement of this round's reward with the previous round's, per prompt (see module).

    ``value``: mean over prompts of :func:`pair_agreement_by_group` (score = current, truth =
    previous); ``kendall_tau`` = 2·value − 1; interval by bootstrap over prompts. Worked example: two
    prompts with current (1, 2, 3) / (1, 2), previous (1, 2, 3) / (2, 1) → per prompt 1.0 and 0.0 →
    value 0.5, τ 0.0, n 2 prompts, 4 pairs.
    """
    _, agree, count = pair_agreement_by_group(group, current, previous)
    rates = agree[count > 0]
    if not len(rates):
        return unavailable("no prompt has two samples the previous reward tells apart")
    lo, hi = interval(rates, n_boot, seed)
    v = float(rates.mean())
    return {"value": v, "kendall_tau": 2 * v - 1, "ci_low": lo, "ci_high": hi, "n": int(len(rates)),
            "n_pairs": int(count.sum())}


def variant_agreement(pairs: pd.DataFrame, alpha: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """Share of the round's pairs (chosen_/rejected_ ``reward``, ``logp_policy``, ``n_tokens``,
    ``length``) that the other reward variants order like the selecting reward ``lr`` at ``alpha``.

    Returns {"avg": ..., "ref_free": ...} and ``value`` = the mean of the two. Worked example: two
    pairs with logp_policy (c, r) = (−2, −4), (−6, −3) and n_tokens (2, 2), (2, 3) → ref_free margins
    +2, −3 → 0.5; avg margins −1 − (−2) = +1, −3 − (−1) = −2 → 0.5.
    """
    if len(pairs) == 0:
        return unavailable("no generated pairs")
    m = margins(pairs, alpha)
    out: dict = {"n": int(len(pairs))}
    for k in ("avg", "ref_free"):
        hits = correct(m[k])
        lo, hi = interval(hits, n_boot, seed)
        out[k] = {"value": accuracy(m[k]), "ci_low": lo, "ci_high": hi}
    both = (correct(m["avg"]).astype(float) + correct(m["ref_free"]).astype(float)) / 2
    out["value"] = float(both.mean())
    out["ci_low"], out["ci_high"] = interval(both, n_boot, seed)
    return out


def heldout_from_summary(summary: dict) -> dict:
    """The held-out accuracy signal from dicekit.evals.reward_accuracy.summarize's output: ``value`` is
    the length-regularised reward's accuracy (the reward that selects pairs), ``dpo`` the plain sum's."""
    lr, dpo = summary["overall"]["lr"], summary["overall"]["dpo"]
    if summary["n_pairs"] == 0 or lr["accuracy"] is None:
        return unavailable("no held-out pairs")
    return {"value": lr["accuracy"], "ci_low": lr["ci_low"], "ci_high": lr["ci_high"], "n": summary["n_pairs"],
            "dpo": dpo, "alpha": summary["alpha"]}


def heldout_dpo(heldout: dict) -> dict:
    """The ``heldout_dpo`` signal: the plain DPO sum's accuracy on the held-out pairs, read off the
    ``heldout_accuracy`` signal's ``dpo`` summary (same pairs, same pass)."""
    dpo = heldout.get("dpo") if isinstance(heldout, dict) else None
    if not dpo or dpo.get("accuracy") is None:
        return unavailable(heldout.get("reason", "no held-out pairs") if isinstance(heldout, dict) else "no held-out pairs")
    return {"value": dpo["accuracy"], "ci_low": dpo.get("ci_low"), "ci_high": dpo.get("ci_high"), "n": heldout.get("n")}


def gate_decision(health: dict, signal: str, threshold: float) -> dict:
    """Fall back to offline pairs only (γ = 1) for this round when ``signal``'s value is below
    ``threshold``. A signal that could not be measured never triggers the fallback.

    >>> gate_decision({"consistency": {"value": 0.42}}, "consistency", 0.55)["fallback"]
    True
    """
    if signal not in SIGNALS:
        raise ValueError(f"unknown gate signal {signal!r} (one of {', '.join(SIGNALS)})")
    s = health.get(signal) or {}
    v = s.get("value")
    if v is None:
        return {"fallback": False, "signal": signal, "value": None, "threshold": threshold,
                "reason": f"{signal} not measured ({s.get('reason', 'absent')}): round runs as configured"}
    if v < threshold:
        return {"fallback": True, "signal": signal, "value": v, "threshold": threshold,
                "reason": f"{signal} {v:.3f} < {threshold}: the reward is predicted to hurt; offline pairs only"}
    return {"fallback": False, "signal": signal, "value": v, "threshold": threshold,
            "reason": f"{signal} {v:.3f} >= {threshold}: round runs as configured"}


def verdict(health: dict, signal: str = "heldout_accuracy", threshold: float = 0.6) -> dict:
    """The monitor's verdict, stored with the signals (``health["verdict"]``) so readers need not
    recompute it: :func:`gate_decision` plus ``verdict``, one word — "harm" (the gate's rule would fall
    back), "ok", or "n/a" (the signal was not measured)."""
    d = gate_decision(health, signal, threshold)
    return {"verdict": "n/a" if d["value"] is None else ("harm" if d["fallback"] else "ok"), **d}


def format_health(health: dict) -> str:
    """One line per signal for the end of a round."""
    lines = ["round monitor (judge-free):"]
    for name in SIGNALS:
        s = health.get(name) or {}
        if s.get("value") is None:
            lines.append(f"  {name:<18} n/a ({s.get('reason', 'not computed')})")
        else:
            ci = "" if s.get("ci_low") is None else f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
            lines.append(f"  {name:<18} {s['value']:.3f}{ci} (n={s['n']})")
    return "\n".join(lines)
