"""Does the judge-free round monitor predict a round's outcome, and does any stabiliser make round 2 gain?

In the task world (dicekit.world), per seed: rounds 1–3 of

* ``dice``          plain DICE (α*, γ = 0.5: the demo's round settings),
* ``alpha0``        α = 0,
* ``offline_only``  γ = 1 (offline pairs only),
* ``consistent``    filter_consistent (keep pairs the previous round's reward orders the same way),
* ``cumulative``    reward_mode cumulative (log π_{t-1} − log π_{-1}),
* ``top_margin``    filter_top_fraction 0.5,
* ``gate``          gate on heldout_accuracy < 0.6 (offline pairs only for that round),
* ``gate_dpo``      gate on heldout_dpo < 0.63 (rule chosen on worlds 0–1, tested on worlds 2–4),
* ``oracle_pairs``  control: every round's pairs ranked by the oracle's quality instead of the implicit
                    reward (α = 0; same samples → pairs → training path), what a perfect ranker gives.

Every round runs the monitor (``health_previous_reward: true``, held-out pairs = the world's
annotator-labelled pairs of π_{-1} samples on the eval prompts, their oracle qualities stripped).
The oracle is read only here, after the round: the own-sample agreement of the round's reward
(dicekit.world.evaluate.own_sample_diagnostics), and the quality / win rate of each π_t on the eval
prompts (dicekit.world.demo_eval, as the demo). One JSON line per (seed, setting, round) is appended
to ``OUT/results.jsonl`` as it lands; a rerun skips what is there (and run_round resumes its stages).

    nohup nice -n 10 python benchmarks/round_health.py --seeds 0 1 2 --out /work/runs/round_health &
    python benchmarks/round_health.py --out /work/runs/round_health --table [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

SETTINGS = {  # in the order they run within a round
    "dice": {},
    "offline_only": {"replay_ratio": 1.0},
    "gate": {"gate": True, "gate_signal": "heldout_accuracy", "gate_threshold": 0.6},
    # chosen on worlds 0 and 1 (plain DICE and α = 0 rounds: every round with heldout_dpo ≥ 0.633 gained,
    # every one at ≤ 0.626 lost), then run on worlds 0–4: worlds 2–4 test the rule out of sample
    "gate_dpo": {"gate": True, "gate_signal": "heldout_dpo", "gate_threshold": 0.63},
    "consistent": {"filter_consistent": True},
    "cumulative": {"reward_mode": "cumulative"},
    "top_margin": {"filter_top_fraction": 0.5},
    "oracle_pairs": {"alpha": 0.0},
    "alpha0": {"alpha": 0.0},
}
# Round 1 of these is plain DICE's round 1 to the byte (no previous reward yet: the filter keeps every
# pair, the cumulative reward is the round's own; the gate when it passes), so it is copied, not rerun.
SAME_ROUND_1 = ("consistent", "cumulative", "gate", "gate_dpo")
SIGNALS = ("heldout_accuracy", "heldout_dpo", "consistency", "variant_agreement")
REWARD_SETTINGS = ("dice", "alpha0")  # rounds whose pairs the implicit reward alone picks


def _round_module():
    import dicekit.round.run as m

    return m


def oracle_ranking(cfg, samples, previous):
    """The control's ranking: each valid sample's oracle quality as its reward."""
    from dicekit.world.oracle import quality

    q = [quality(p, r) if v else math.nan for p, r, v in zip(samples["prompt"], samples["response"], samples["valid"])]
    return samples.assign(reward=q)


def run_setting_round(world, seed_dir: Path, seed: int, setting: str, t: int, rounds: int, quiet: bool):
    from dicekit.commands.demo import round_config
    from dicekit.world.demo_eval import health_pairs_file

    rmod = _round_module()
    cfg = round_config(world, seed_dir / setting, seed, "full", rounds, quiet, diagnose=False,
                       health_pairs=str(health_pairs_file(world, seed_dir)), **SETTINGS[setting])
    real = rmod.ranking_samples
    if setting == "oracle_pairs":
        rmod.ranking_samples = oracle_ranking
    try:
        rmod.run_round(cfg, t)
    finally:
        rmod.ranking_samples = real
    return cfg


def evaluate(world, folder: Path, model: str, seed: int, cfg) -> dict:
    """Oracle quality and win rate of a model's sampled answers on the eval prompts (the demo's
    sampled evaluation, dicekit.world.evaluate; no greedy pass)."""
    from dicekit.commands.demo import EVAL_SAMPLES
    from dicekit.data import read_jsonl
    from dicekit.world import evaluate as E

    path = folder / "outputs.jsonl"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        E.generate_outputs(model, read_jsonl(world.eval_prompts), path, temperature=cfg.temperature, top_p=cfg.top_p,
                           max_new_tokens=cfg.max_new_tokens, seed=seed, samples=EVAL_SAMPLES)
    n = E.summarize_outputs(read_jsonl(path))
    return {"quality": n["quality"], "win_rate": n["win_rate"], "avg_length": n["avg_length"]}


def oracle_side(rdir: Path, alpha: float) -> dict:
    """What the oracle says about round t's reward and pairs (read after the round, never by it)."""
    import pandas as pd

    from dicekit.world.evaluate import own_sample_diagnostics
    from dicekit.world.oracle import quality

    samples = pd.read_parquet(rdir / "samples.parquet")
    own = own_sample_diagnostics(samples, alphas=(alpha,))["by_alpha"][alpha]
    pairs = pd.read_parquet(rdir / "pairs.parquet")
    gen = pairs[pairs["source"] == "generated"]
    dq = np.array([quality(p, c) - quality(p, r) for p, c, r in zip(gen["prompt"], gen["chosen"], gen["rejected"])])
    untied = dq[dq != 0]
    return {"own_agreement": own["own_pair_agreement"],
            "pairs_right": float((untied > 0).mean()) if len(untied) else None,
            "pairs_quality_gap": float(dq.mean()) if len(dq) else None}


def row_of(seed: int, setting: str, t: int, rdir: Path, numbers: dict) -> dict:
    m = json.loads((rdir / "metrics.json").read_text())
    h = m.get("health") or {}
    sig = {k: (h.get(k) or {}).get("value") for k in ("heldout_accuracy", "consistency", "variant_agreement")}
    sig["heldout_dpo"] = ((h.get("heldout_accuracy") or {}).get("dpo") or {}).get("accuracy")
    ci = {k: [(h.get(k) or {}).get("ci_low"), (h.get(k) or {}).get("ci_high")]
          for k in ("heldout_accuracy", "consistency", "variant_agreement")}
    stab = m.get("stabilisers") or {}
    return {"seed": seed, "setting": setting, "round": t, "alpha": m["alpha"], "n_pairs_generated": m["n_pairs_generated"],
            "n_pairs_offline": m["n_pairs_offline"], "signals": sig, "signals_ci": ci,
            "gate": (stab.get("gate") or {}).get("fallback"),
            "kept": {k: stab[k].get("kept") for k in ("filter_consistent", "filter_top_fraction") if k in stab},
            **oracle_side(rdir, float(m["alpha"])), **numbers}


def run(seeds, rounds: int, out: Path, settings, quiet: bool, world_seed: int | None = None,
        results: Path | None = None) -> None:
    """Each seed's world and rounds; with ``world_seed``, one world and ``seeds`` as the rounds' seeds
    (sampling, training and evaluation draws) — seed spread of the round on a fixed π_0."""
    import torch

    from dicekit import rundir
    from dicekit.commands.demo import THREADS
    from dicekit.world import recipe

    torch.set_num_threads(THREADS)
    results = Path(results) if results is not None else out / "results.jsonl"
    done = set()
    if results.exists():
        done = {(r["seed"], r["setting"], r["round"]) for r in map(json.loads, results.read_text().splitlines())}
    for seed in seeds:
        ws = seed if world_seed is None else world_seed
        world = recipe.build(recipe.WorldConfig(seed=ws), quiet=quiet)
        seed_dir = out / (f"seed{seed}" if ws == seed else f"world{ws}_seed{seed}")
        seed_dir.mkdir(parents=True, exist_ok=True)
        if (seed, "base", 0) not in done:
            from dicekit.commands.demo import round_config

            cfg0 = round_config(world, seed_dir / "dice", seed, "full", rounds, True)
            nums = evaluate(world, seed_dir / "evals_pi_0", str(world.pi_0), seed, cfg0)
            _append(results, {"seed": seed, "world_seed": ws, "setting": "base", "round": 0, **nums})
        for t in range(1, rounds + 1):
            for setting in settings:
                if (seed, setting, t) in done:
                    continue
                t0 = time.time()
                shared = t == 1 and setting in SAME_ROUND_1 and share_round_1(seed_dir, setting)
                cfg = run_setting_round(world, seed_dir, seed, setting, t, rounds, quiet)
                rdir = rundir.round_dir(cfg.run_dir, t)
                nums = evaluate(world, seed_dir / setting / "evals" / f"pi_{t}", str(rdir / "model"), seed, cfg)
                row = row_of(seed, setting, t, rdir, nums)
                row["shared_with_dice"] = bool(shared)
                row["world_seed"] = ws
                row["seconds"] = round(time.time() - t0, 1)
                _append(results, row)
                print(f"seed {seed} {setting} round {t}: quality {nums['quality']:.3f} ({row['seconds']}s)", flush=True)


def share_round_1(seed_dir: Path, setting: str) -> bool:
    """Copy plain DICE's finished round 1 (and its evaluation) into ``setting``'s run when it is the
    same round (see SAME_ROUND_1; the gate only when DICE's own round-1 signal passes it)."""
    import shutil

    src, dst = seed_dir / "dice", seed_dir / setting
    if (dst / "round_1").exists() or not (src / "round_1" / "metrics.json").exists():
        return (dst / "round_1" / "shared_with_dice").exists()
    if setting.startswith("gate"):
        from dicekit.analysis.health import gate_decision, heldout_dpo

        h = json.loads((src / "round_1" / "metrics.json").read_text()).get("health") or {}
        h.setdefault("heldout_dpo", heldout_dpo(h.get("heldout_accuracy") or {}))  # rounds run before that signal
        cfg = SETTINGS[setting]
        if gate_decision(h, cfg["gate_signal"], cfg["gate_threshold"])["fallback"]:
            return False
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "round_1", dst / "round_1", ignore=shutil.ignore_patterns(".work"))
    (dst / "round_1" / "shared_with_dice").write_text("copied from the dice run: the same round 1\n")
    shutil.copytree(src / "evals" / "pi_1", dst / "evals" / "pi_1")
    return True


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------- the tables


def load(results: Path) -> list[dict]:
    return [json.loads(x) for x in Path(results).read_text().splitlines() if x.strip()]


def with_deltas(rows: list[dict]) -> list[dict]:
    """Each round row with Δquality / Δwin rate against π_{t-1} of the same seed and setting."""
    key = {(r["seed"], r["setting"], r["round"]): r for r in rows}
    out = []
    for r in rows:
        if r["round"] == 0:
            continue
        before = key.get((r["seed"], "base", 0)) if r["round"] == 1 else key.get((r["seed"], r["setting"], r["round"] - 1))
        if before is None:
            continue
        out.append({**r, "d_quality": r["quality"] - before["quality"], "d_win_rate": r["win_rate"] - before["win_rate"]})
    return out


def mean_sd(xs, fmt="{:.3f}", signed=False) -> str:
    xs = np.asarray([x for x in xs if x is not None], dtype=float)
    if not len(xs):
        return "n/a"
    f = fmt.replace("{:", "{:+") if signed else fmt
    return f"{f.format(xs.mean())} ± {fmt.format(xs.std(ddof=1))}" if len(xs) > 1 else f.format(xs[0])


def spearman_ci(x, y, n_boot: int = 2000, seed: int = 0):
    """Spearman ρ and a 95% percentile-bootstrap interval over rounds (None below 4 rounds)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 4:
        return None, None, None, len(x)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if len(set(x[i])) > 1 and len(set(y[i])) > 1:
            boots.append(spearmanr(x[i], y[i]).statistic)
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots else (np.nan, np.nan)
    return rho, float(lo), float(hi), len(x)


def tables(rows: list[dict]) -> str:
    d = with_deltas(rows)
    seeds = sorted({r["seed"] for r in rows})
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in d)]
    rounds = sorted({r["round"] for r in d})
    base = [r for r in rows if r["setting"] == "base"]
    worlds = {r["seed"]: r.get("world_seed", r["seed"]) for r in rows}
    lines = [f"Seeds (world): {', '.join(f'{s} ({worlds[s]})' for s in seeds)}; mean ± sd over the seeds that finished "
             "the cell (n). "
             f"π_0: quality {mean_sd([r['quality'] for r in base])}, win rate {mean_sd([r['win_rate'] for r in base], '{:.1f}')}.", "",
             "| setting | round | n | quality | Δ quality | win rate (%) | Δ win rate | generated pairs | oracle: own-sample agreement | oracle: trained pairs right |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in settings:
        for t in rounds:
            c = [r for r in d if r["setting"] == s and r["round"] == t]
            if not c:
                continue
            lines.append(f"| {s} | {t} | {len(c)} | {mean_sd([r['quality'] for r in c])} "
                         f"| {mean_sd([r['d_quality'] for r in c], signed=True)} | {mean_sd([r['win_rate'] for r in c], '{:.1f}')} "
                         f"| {mean_sd([r['d_win_rate'] for r in c], '{:.1f}', signed=True)} "
                         f"| {mean_sd([r['n_pairs_generated'] for r in c], '{:.0f}')} | {mean_sd([r['own_agreement'] for r in c])} "
                         f"| {mean_sd([r['pairs_right'] for r in c])} |")
    for g in (k for k in SETTINGS if k.startswith("gate")):
        gates = [r for r in d if r["setting"] == g]
        if gates:
            lines += ["", f"{g} decisions (seed: rounds that fell back to offline pairs): " + "; ".join(
                f"{s}: {[r['round'] for r in gates if r['seed'] == s and r['gate']] or 'none'}" for s in seeds)]
    kept = [r for r in d if r.get("kept")]
    if kept:
        lines += ["", "Stabiliser filters, generated pairs kept of those selected (mean over seeds): " + "; ".join(
            f"{s} round {t}: " + ", ".join(
                f"{k} {np.mean([r['kept'][k] for r in kept if r['setting'] == s and r['round'] == t]):.0f}"
                for k in sorted({k for r in kept if r['setting'] == s and r['round'] == t for k in r['kept']}))
            for s in SETTINGS for t in rounds if any(r["setting"] == s and r["round"] == t for r in kept))]
    for keep in (REWARD_SETTINGS, REWARD_SETTINGS + ("offline_only",)):
        sub = [r for r in d if r["setting"] in keep]
        present = [s for s in keep if any(r["setting"] == s for r in sub)]
        label = f"rounds of {', '.join(present)}" + (" (the implicit reward picks the pairs)" if "offline_only" not in present else "")
        if keep != REWARD_SETTINGS and present == [s for s in REWARD_SETTINGS if s in present]:
            continue  # nothing beyond the first table
        lines += ["", f"Signals against the outcome, over {len(sub)} {label}: Spearman ρ [95% bootstrap "
                  "interval over rounds] with the oracle's own-sample agreement, Δ quality and Δ win rate; sign "
                  "agreement: share of rounds where (signal > 0.5) matches (Δ > 0); gate rule: share where "
                  "(signal < 0.6) matches (Δ quality < 0).", "",
                  "| signal | rounds | mean | ρ vs oracle agreement | ρ vs Δ quality | ρ vs Δ win rate | sign agreement (Δ quality) | gate rule (Δ quality) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name in SIGNALS:
            x = np.array([np.nan if r["signals"].get(name) is None else r["signals"][name] for r in sub])
            cells = []
            for target in ("own_agreement", "d_quality", "d_win_rate"):
                rho, lo, hi, n = spearman_ci(x, [r[target] for r in sub])
                cells.append("n/a" if rho is None else f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]")
            ok = ~np.isnan(x)
            dq = np.array([r["d_quality"] for r in sub])[ok]
            xs = x[ok]
            sign = f"{np.mean((xs > 0.5) == (dq > 0)):.2f}" if ok.any() else "n/a"
            gate = f"{np.mean((xs < 0.6) == (dq < 0)):.2f}" if ok.any() else "n/a"
            lines.append(f"| {name} | {int(ok.sum())} | {mean_sd(xs)} | {' | '.join(cells)} | {sign} | {gate} |")
    oracle = [r for r in d if r["setting"] in REWARD_SETTINGS]
    rho, lo, hi, n = spearman_ci([r["own_agreement"] for r in oracle], [r["d_quality"] for r in oracle])
    if rho is not None:
        lines += ["", f"For comparison, the oracle's own-sample agreement against Δ quality over the same {n} rounds: "
                  f"ρ = {rho:+.2f} [{lo:+.2f}, {hi:+.2f}]."]
    lines += ["", "Per round (plain DICE): signals and outcome.", "",
              "| seed | round | heldout_accuracy | heldout_dpo | consistency | variant_agreement | oracle own-sample agreement | Δ quality | Δ win rate |",
              "|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for r in sorted((r for r in d if r["setting"] == "dice"), key=lambda r: (r["seed"], r["round"])):
        s = r["signals"]
        lines.append(f"| {r['seed']} | {r['round']} | {f(s['heldout_accuracy'])} | {f(s['heldout_dpo'])} | {f(s['consistency'])} "
                     f"| {f(s['variant_agreement'])} | {f(r['own_agreement'])} | {r['d_quality']:+.3f} | {r['d_win_rate']:+.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--world-seed", type=int, default=None,
                    help="one world for every seed (then --seeds are the rounds' seeds); default: a world per seed")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--out", default="runs/round_health")
    ap.add_argument("--results", default=None, help="the results file (default OUT/results.jsonl); the published "
                    "measurements are benchmarks/results/round_health.jsonl")
    ap.add_argument("--table", action="store_true", help="only print the tables of what the results file holds")
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    results = Path(args.results) if args.results else out / "results.jsonl"
    if not args.table:
        run(args.seeds, args.rounds, out, args.settings, args.quiet, args.world_seed, results)
    text = tables(load(results))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
