"""`write_report(run_dir)`: a markdown report with PNG figures of a run folder. A pure reader.

Reads (all optional except the round folders; see docs/run-folder.md for the round files):

* ``run.yaml``; per round ``config.yaml``, ``metrics.json``, ``samples.parquet``, ``pairs.parquet``,
  ``alpha_sweep.csv``, ``train_log.jsonl`` (through dicekit.view.runs); ``metrics.json``'s ``diagnostic``
  (dicekit.analysis.diagnose) when the round ran it; its ``health`` and ``stabilisers`` (the judge-free
  round monitor, dicekit.analysis.health, and what the stabilisers did);
* ``round_<t>/evals/*.json``: evaluations of π_t (``round_0`` = π_0) — win rates, lengths, any scalar
  fields; ``reward_accuracy*.json`` among them (written by ``dicekit eval reward-accuracy --out``) are
  shown as reward accuracy instead;
* ``analysis/reward_accuracy*.json`` (same format, any models) and ``analysis/rankers.json`` (written
  by ``dicekit compare-rankers --out``);
* ``evals/ifeval/<model name>/metrics.json`` + ``results.jsonl`` (written by ``dicekit eval ifeval
  --out``): IFEval accuracies per model, per category, and paired prompt-level differences against
  the model named ``pi_0`` (π_0) with bootstrap 95% intervals;
* ``demo_summary.json``, or the ``extra`` argument: ``{section title: rows | markdown text | {"text":
  markdown, "rows": rows}}`` where rows are a list of flat JSON objects (or a DataFrame) rendered as a
  table (after its text, which defines the table's terms) — the demo's per-model
  table (win rate, LC win rate, length, quality, reward accuracy) and its diagnostics.

Writes ``report.md`` and its figures into ``out_dir`` (default ``RUN_DIR/report/``). Never imports
torch, the trainer or the generator (tests/analysis check ``sys.modules``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dicekit import rundir
from dicekit.view import plots, runs
from dicekit.errors import UserError
from dicekit.evals.reward_accuracy import VARIANT_NAMES, VARIANTS

EVAL_COLUMNS = ("win_rate", "length_controlled_winrate", "standard_error", "avg_length", "score", "quality", "n_total")


def table(rows, columns: list[str] | None = None, floatfmt: str = "{:.4g}") -> str:
    """A markdown table of ``rows`` (list of dicts or DataFrame); None/NaN shown as blank."""
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    if df.empty:
        return "_(none)_"

    def cell(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return ""
        if isinstance(v, (float, np.floating)):
            return floatfmt.format(float(v))
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _last_step(log: pd.DataFrame | None) -> dict:
    if log is None or "loss" not in log:
        return {}
    steps = log[log["loss"].notna()]
    return steps.iloc[-1].to_dict() if len(steps) else {}


def round_row(run_dir, t: int, evals: pd.DataFrame | None) -> dict:
    """One row of the per-round table. α and the pair counts come from metrics.json (counts from
    pairs.parquet when it lacks them); the mean lengths and reward margins are always computed from
    pairs.parquet (generated pairs, lengths from samples.parquet, see runs.pair_table); the final
    loss and train reward accuracy from the last step of train_log.jsonl, else metrics.json; win
    rates from the round's evaluations."""
    m = runs.load_metrics(run_dir, t) or {}
    cfg = runs.load_config(run_dir, t) or {}
    unit = cfg.get("length_unit", "chars")
    row = {"round": t, "alpha*": m.get("alpha_star", cfg.get("alpha")), "alpha used": m.get("alpha", cfg.get("alpha")),
           "pairs generated": m.get("n_pairs_generated"), "pairs offline": m.get("n_pairs_offline")}
    pairs = runs.load_pairs(run_dir, t)
    if pairs is not None:
        samples = runs.load_samples(run_dir, t, columns=["prompt_id", "sample_id", "reward", "n_chars", "n_tokens"])
        gen = runs.pair_table(pairs, samples, unit)
        gen = gen[gen["source"] == "generated"] if "source" in gen else gen
        row["pairs generated"] = row["pairs generated"] if row["pairs generated"] is not None else len(gen)
        if row["pairs offline"] is None and "source" in pairs:
            row["pairs offline"] = int((pairs["source"] == "offline").sum())
        row.update({f"len chosen ({unit})": gen["chosen_length"].mean(), f"len rejected ({unit})": gen["rejected_length"].mean(),
                    "reward margin": gen["reward_margin"].mean(), "reward_lr margin": gen["reward_lr_margin"].mean()})
    last = _last_step(runs.load_train_log(run_dir, t))
    row["final loss"] = last.get("loss", m.get("final_loss"))
    row["train reward acc."] = last.get("rewards/accuracies", m.get("final_reward_accuracy"))
    if evals is not None:
        for _, e in evals[evals["round"] == t].iterrows():
            for col in ("win_rate", "length_controlled_winrate"):
                if col in e and pd.notna(e[col]):
                    row[f"{e['name']} {'LC ' if col.startswith('length') else ''}win rate"] = e[col]
    return row


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot be read ({err})") from err


def reward_accuracy_files(run_dir) -> list[tuple[str, dict]]:
    """(label, reward-accuracy JSON) from round_<t>/evals/reward_accuracy*.json and analysis/."""
    run = Path(run_dir)
    found = sorted(run.glob("round_*/evals/reward_accuracy*.json")) + sorted(run.glob("analysis/reward_accuracy*.json"))
    return [(str(p.relative_to(run)), _json(p)) for p in found]


def reward_accuracy_rows(items: list[tuple[str, dict]]) -> list[dict]:
    rows = []
    for label, r in items:
        row = {"source": label, "pairs": r.get("n_pairs"), "alpha": r.get("alpha")}
        for k in (*VARIANTS, "longer"):
            o = (r.get("overall") or {}).get(k) or {}
            row[VARIANT_NAMES[k]] = _pct_ci(o)
        truth = r.get("truth") or {}
        for k in ("labels", "dpo"):
            if truth.get(k):
                row[f"vs truth: {'labels' if k == 'labels' else 'DPO'}"] = _pct_ci(truth[k])
        rows.append(row)
    return rows


def _pct_ci(o: dict) -> str:
    if not o or o.get("accuracy") is None:
        return ""
    ci = f" [{100 * o['ci_low']:.1f}, {100 * o['ci_high']:.1f}]" if o.get("ci_low") is not None else ""
    return f"{100 * o['accuracy']:.1f}%{ci}"


def _extra_sections(extra) -> list[str]:
    """Sections of ``extra``: markdown text, rows (a table), or {"text", "rows"} (the text first, so a
    table's terms are defined where it appears)."""
    out = []
    for title, body in (extra or {}).items():
        out += [f"## {title}", ""]
        if isinstance(body, dict):
            out += [str(body.get("text", "")), ""] if body.get("text") else []
            body = body.get("rows") or []
        out += [body if isinstance(body, str) else table(body), ""]
    return out


def write_report(run_dir, out_dir=None, extra: dict | None = None) -> Path:
    """Write ``report.md`` + figures for ``run_dir`` into ``out_dir`` (default RUN_DIR/report);
    returns the path of report.md. ``extra``: more sections (see the module docstring); without it,
    ``RUN_DIR/demo_summary.json`` is used when present."""
    run = runs.check_run_dir(run_dir)
    out = Path(out_dir) if out_dir else run / "report"
    with rundir.lock_if_inside(run, out, "dicekit report"):
        return _write_report(run, out, extra)


def _write_report(run: Path, out: Path, extra: dict | None) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(rundir.os_error_message(e, out)) from None
    if extra is None and (run / "demo_summary.json").is_file():
        extra = _json(run / "demo_summary.json")
        if not isinstance(extra, dict):
            raise UserError(f"{run / 'demo_summary.json'}: expected an object of section title -> rows or text")
    rounds = runs.rounds(run)
    evals = runs.eval_table(run)
    if evals is not None:
        evals = evals[~evals["name"].astype(str).str.startswith(("reward_accuracy", "rankers"))]
        evals = evals if len(evals) else None
    cfg = runs.load_run_config(run) or {}
    md = [f"# DICE run report: `{run.name}`", ""]
    first = runs.load_config(run, rounds[0]) or {}
    pi0 = rundir.shown_path(cfg.get("policy", first.get("run_policy", first.get("policy"))), run)
    pim1 = rundir.shown_path(cfg.get("reference", first.get("run_reference", first.get("reference"))), run)
    md += [f"- rounds: {', '.join(map(str, rounds))}; π_0 = `{pi0 or '?'}`, π_-1 = `{pim1 or '?'}`",
           f"- dicekit {cfg.get('dicekit_version') or first.get('dicekit_version') or 'unknown'}, "
           f"git {cfg.get('git_sha') or first.get('git_sha') or 'unknown'}", ""]
    md += _extra_sections(extra)
    md += ["## Rounds", "", "alpha*: the length penalty α (implicit reward per character, or per token) at "
           "which the best-vs-worst pairs' chosen and rejected responses have the same mean length; alpha used: "
           "the α the pairs were built with (α* unless fixed). Length and reward margins are means over the "
           "round's generated pairs (chosen − rejected); loss and reward accuracy (the share of training pairs "
           "whose implicit reward margin is positive) are the last logged training step.", ""]
    md += [table([round_row(run, t, evals) for t in rounds]), ""]
    md += _diagnostic_section(run, rounds)
    md += _health_section(run, rounds)
    md += _eval_section(evals, out)
    md += _length_section(run, rounds, out)
    logs = {t: log for t in rounds if (log := runs.load_train_log(run, t)) is not None and len(log)}
    if logs:
        loss = plots.objective_label(first.get("loss_type", ["sigmoid"]), first.get("loss_weights"))
        plots.training_figure(logs, out / "training.png", loss_label=loss)
        md += ["## Training", "", f"Training {loss} per step (with an SFT term the loss starts above DPO's "
               "log 2 ≈ 0.693) and the share of training pairs whose implicit reward margin is positive.", "",
               "![training loss and reward accuracy per step](training.png)", ""]
    md += _accuracy_section(run, out)
    md += ifeval_section(run, out)
    rankers = run / "analysis" / "rankers.json"
    if rankers.is_file():
        r = _json(rankers)
        src = (f"round {r['round']} samples of `{rundir.shown_path(r.get('samples'), run)}`" if r.get("samples")
               else f"`{rundir.shown_path(r.get('data'), run)}`")
        md += ["## Which ranker agrees with the labels? (paper Table 5)", "",
               f"{r['n_pairs']} labelled pairs from {src}" + (f", labels from the {r['oracle']} oracle" if r.get("oracle") else "")
               + f"; implicit reward of `{rundir.shown_path(r['policy'], run)}` against "
               f"`{rundir.shown_path(r['reference'], run)}`. Ties count as wrong.", "",
               rankers_table(r), ""]
    path = rundir.write_text(out / "report.md", "\n".join(md).rstrip() + "\n")
    return path


def rankers_table(result: dict) -> str:
    """A ranker comparison (dicekit.analysis.rankers.compare; ``analysis/rankers.json``) as a markdown
    table (accuracy in %, 95% bootstrap interval)."""
    has_truth = any("truth_accuracy" in r for r in result["rankers"])
    head = "| ranker | agreement with labels | 95% CI | ties |" + (" agreement with truth |" if has_truth else "") + " note |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rankers"]:
        acc = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        ci = "" if r.get("ci_low") is None else f"{100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}%"
        ties = "" if r.get("n_ties") is None else str(r["n_ties"])
        truth = ""
        if has_truth:
            t = r.get("truth_accuracy")
            truth = " " + ("" if t is None else f"{100 * t:.1f}%") + " |"
        lines.append(f"| {r['ranker']} | {acc} | {ci} | {ties} |{truth} {r.get('note', '')} |")
    return "\n".join(lines)


DIAGNOSTIC_SETS = (("pairs_alpha_star", "best-vs-worst pairs at α*"), ("pairs_alpha_0", "best-vs-worst pairs at α = 0"),
                   ("random_pairs", "random pairs of samples"))


def _agree(x) -> str:
    if not isinstance(x, dict) or x.get("agreement") is None:
        return ""
    ci = f" [{100 * x['ci_low']:.1f}, {100 * x['ci_high']:.1f}]" if x.get("ci_low") is not None else ""
    return f"{100 * x['agreement']:.1f}%{ci} (n={x.get('n_decided', '?')})"


def _diagnostic_section(run: Path, rounds: list[int]) -> list[str]:
    """The round diagnostic (metrics.json ``diagnostic``, from dicekit.analysis.diagnose) when it was run."""
    rows = []
    for t in rounds:
        d = (runs.load_metrics(run, t) or {}).get("diagnostic")
        if not isinstance(d, dict):
            continue
        for key, label in DIAGNOSTIC_SETS:
            x = d.get(key) or {}
            rows.append({"round": t, "judge": d.get("judge"), "pairs": label, "n": x.get("n_pairs"),
                         "implicit reward agrees": _agree(x.get("implicit_reward")),
                         "length-regularised agrees": _agree(x.get("implicit_reward_lr")),
                         "longer wins agrees": _agree(x.get("longer_wins"))})
    if not rows:
        return []
    return ["## Does the implicit reward agree with the judge on the policy's own samples?", "",
            "The round diagnostic: how often the judge prefers what the round's implicit reward prefers "
            "(judge draws and ranker ties left out), against the length-only baseline.", "", table(rows), ""]


HEALTH_SIGNALS = ("heldout_accuracy", "heldout_dpo", "consistency", "variant_agreement")  # metrics.json["health"] keys
HOW_TO_READ_MONITOR = (
    "How to read the monitor: each signal is measured by the round itself, before it trains, from what it "
    "already has (no judge, no oracle). heldout_accuracy: the round's reward (π_{t-1} against π_{t-2}, "
    "length-regularised at the round's α) on labelled pairs it does not train on, ties wrong; heldout_dpo: "
    "the same without the length term (plain DPO sum); consistency: "
    "how often this round's reward orders two of a prompt's samples like the previous round's reward; "
    "variant_agreement: how often the length-normalised and reference-free log-probs order the round's "
    "best-vs-worst pairs like the reward that picked them. 0.5 is chance for all four; brackets: 95% "
    "bootstrap intervals. Verdict: the gate's rule (heldout_accuracy below the gate threshold, 0.6 unless "
    "configured, predicts harm). What each signal predicted in the task world is measured in "
    "benchmarks/README.md (\"Round monitor and stabilisers\")."
)


def _signal(x) -> str:
    if not isinstance(x, dict) or x.get("value") is None:
        return "n/a"
    ci = f" [{x['ci_low']:.2f}, {x['ci_high']:.2f}]" if x.get("ci_low") is not None else ""
    return f"{x['value']:.3f}{ci}"


def _health_section(run: Path, rounds: list[int]) -> list[str]:
    """The judge-free round monitor (metrics.json ``health``) and the stabilisers' records."""
    rows, seen_pairs = [], []
    for t in rounds:
        m = runs.load_metrics(run, t) or {}
        h = m.get("health")
        if not isinstance(h, dict):
            continue
        if str((h.get("heldout_accuracy") or {}).get("source", "")).startswith("offline_data"):
            seen_pairs.append(str(t))
        row = {"round": t, **{name: _signal(h.get(name)) for name in HEALTH_SIGNALS},
               "verdict": (h.get("verdict") or {}).get("verdict", "n/a")}
        stab = m.get("stabilisers") or {}
        done = [f"{k}: kept {v['kept']} of {v['kept'] + v['dropped']}" for k, v in stab.items()
                if isinstance(v, dict) and v.get("applied")]
        if stab.get("reward_mode") == "cumulative":
            done.append("cumulative reward")
        if isinstance(stab.get("gate"), dict):
            done.append("gate: " + ("offline pairs only" if stab["gate"]["fallback"] else "passed"))
        row["stabilisers"] = "; ".join(done)
        rows.append(row)
    if not rows:
        return []
    note = []
    if seen_pairs:
        note = [f"Round{'s' if len(seen_pairs) > 1 else ''} {', '.join(seen_pairs)}: the heldout pairs are "
                "`offline_data`, which the replay of earlier rounds trains on, and π_0 too when it was trained on "
                "them; so heldout_accuracy and heldout_dpo there measure how well the reward fits pairs it has "
                "seen, not how it generalises (set `health_pairs` to labelled pairs no round trains on).", ""]
    return ["## Round monitor (judge-free)", "", HOW_TO_READ_MONITOR, "", table(rows), "", *note]


def _eval_section(evals: pd.DataFrame | None, out: Path) -> list[str]:
    if evals is None:
        return []
    cols = ["round", "name", *[c for c in EVAL_COLUMNS if c in evals.columns]]
    cols += [c for c in evals.columns if c.endswith(("judge.model", "judge"))]
    plots.win_rate_figure(evals, out / "win_rate.png")
    return ["## Evaluations of π_t", "", table(evals.sort_values(["round", "name"]), cols), "",
            "![win rate and length per round](win_rate.png)", ""]


def _length_section(run: Path, rounds: list[int], out: Path) -> list[str]:
    md = ["## Length of chosen vs rejected responses", "",
          "Best-vs-worst pairs each α would select, recomputed from the round's samples; red dashes: "
          "the mean; grey: the offline pairs (the paper's Figure 2). Right: the α sweep, α* marked.", ""]
    any_fig = False
    for t in rounds:
        if not (rundir.round_dir(run, t) / "samples.parquet").exists():
            continue
        star = plots.round_alpha_star(run, t)
        spec = "0,ALPHA*,2*ALPHA*" if star else "0"
        res = plots.plot_length_diff(run, t, spec, out)
        any_fig = True
        means = ", ".join(f"α={a:.4g}: {m:+.1f}" for a, m in zip(res["alphas"], res["means"]) if m is not None)
        md += [f"### Round {t}", "", f"Mean length difference ({res['unit']}): {means}"
               + (f"; offline pairs {res['offline_mean']:+.1f}" if res["offline_mean"] is not None else ""), ""]
        md += [f"![round {t}: {Path(f).stem.rsplit('_round', 1)[0].replace('_', ' ')}]({Path(f).name})"
               for f in res["files"]] + [""]
    return md if any_fig else []


def _accuracy_section(run: Path, out: Path) -> list[str]:
    items = reward_accuracy_files(run)
    if not items:
        return []
    rows = reward_accuracy_rows(items)
    bars = []
    for label, r in items:
        for k in ("dpo", "lr", "longer"):
            o = (r.get("overall") or {}).get(k)
            if o and o.get("accuracy") is not None:
                short = label.replace("/evals/", " ").replace("analysis/", "").removesuffix(".json")
                bars.append({"label": f"{short}: {VARIANT_NAMES[k]}", **o})
    md = ["## Implicit-reward accuracy", "",
          "Share of labelled pairs where the chosen response scores strictly higher (ties wrong), "
          "95% bootstrap interval. \"longer wins\" is the accuracy of preferring the longer response.", "",
          table(rows), ""]
    if bars:
        plots.reward_accuracy_figure(pd.DataFrame(bars), out / "reward_accuracy.png")
        md += ["![reward accuracy](reward_accuracy.png)", ""]
    for label, r in items:
        if r.get("by_subset"):
            md += [f"By subset, `{label}`:", "",
                   table([{"subset": b["subset"], "n": b["n"], **{k: _pct_ci(b.get(k)) for k in ("dpo", "lr", "longer")}}
                          for b in r["by_subset"]]), ""]
        if r.get("by_length"):
            md += [f"By length difference (chosen − rejected), `{label}`:", "",
                   table([{"bucket": b["bucket"], "n": b["n"], **{k: _pct_ci(b.get(k)) for k in ("dpo", "lr", "longer")}}
                          for b in r["by_length"]]), ""]
    return md


IFEVAL_BASELINE = "pi_0"


def _pm(r: dict, key: str) -> str:
    return f"{100 * r[f'{key}_acc']:.1f} ± {100 * r[f'{key}_se']:.1f}"


def _decoding(g: dict | None) -> str:
    if not g:
        return "given outputs"
    how = "greedy" if not g.get("temperature") else f"T={g['temperature']}, top-p {g.get('top_p')}"
    return f"{how}, ≤{g.get('max_new_tokens')} tokens, {g.get('dtype', '')}".rstrip(", ")


def ifeval_section(run: Path, out: Path) -> list[str]:
    """IFEval evaluations of the run's models (``evals/ifeval/*/``), when there are any."""
    from dicekit.evals.ifeval import paired_difference

    evals = runs.load_ifeval_evals(run)
    if not evals:
        return []
    rows = [{"model": e["name"], "prompts": e.get("prompts", e.get("n_prompts")),
             "prompt strict": _pm(e, "prompt_level_strict"), "instruction strict": _pm(e, "inst_level_strict"),
             "prompt loose": _pm(e, "prompt_level_loose"), "instruction loose": _pm(e, "inst_level_loose"),
             "mean of prompt & instruction, strict": 100 * e["average_prompt_inst_strict"],
             "mean length (chars)": e.get("mean_response_chars"), "decoding": _decoding(e.get("generation"))}
            for e in evals]
    plots.ifeval_figure(evals, out / "ifeval.png")
    checkers = sorted({str(e.get("checker")) for e in evals})
    md = ["## IFEval", "",
          f"Accuracy in % ± one standard error (instruction level: clustered by prompt); checker {', '.join(checkers)}. "
          "Strict: the response as written; loose: any of 8 variants (without `*`, without the first/last line) passes. "
          "Responses and per-prompt results: `evals/ifeval/<model>/`.", "",
          table(rows, floatfmt="{:.1f}"), "", "![IFEval accuracy per model](ifeval.png)", ""]
    base = next((e for e in evals if e["name"] == IFEVAL_BASELINE and e.get("results_path")), None)
    if base is not None:
        base_rows = runs.load_ifeval_results(base["results_path"])
        diffs = []
        for e in evals:
            if e is base or not e.get("results_path"):
                continue
            other = runs.load_ifeval_results(e["results_path"])
            if {r["prompt"] for r in other} != {r["prompt"] for r in base_rows}:
                continue
            row = {"model": e["name"], "prompts": len(other)}
            for mode in ("strict", "loose"):
                d = paired_difference(other, base_rows, mode)
                row[f"prompt {mode}, minus {IFEVAL_BASELINE}"] = (
                    f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]")
            diffs.append(row)
        if diffs:
            md += [f"Paired differences of prompt-level accuracy against `{IFEVAL_BASELINE}` (percentage points, "
                   "percentile bootstrap 95% interval over prompts, 2,000 resamples, seed 0):", "", table(diffs), ""]
    cats = sorted({c["name"] for e in evals for c in e.get("by_category", [])})
    if cats:
        by = [{"category": c, **{e["name"]: next((100 * x["strict_acc"] for x in e.get("by_category", [])
                                                  if x["name"] == c), None) for e in evals}} for c in cats]
        md += ["Instruction-level strict accuracy (%) per category:", "", table(by, floatfmt="{:.1f}"), ""]
    types = sorted({c["name"] for e in evals for c in e.get("by_instruction", [])})
    if types:
        by = [{"instruction": i, "n": next(x["n"] for e in evals for x in e.get("by_instruction", []) if x["name"] == i),
               **{e["name"]: next((100 * x["strict_acc"] for x in e.get("by_instruction", []) if x["name"] == i), None)
                  for e in evals}} for i in types]
        md += ["Strict accuracy (%) per instruction type (n: instructions of that type in the first model's set):", "",
               table(by, floatfmt="{:.1f}"), ""]
    return md
