"""The dashboard's sections, one function each; they read through :class:`app.loaders.Round`.

Text written by a model (prompts, responses, tokens) is only ever shown through ``st.code``,
``st.dataframe``, widget labels or HTML-escaped spans (:func:`app.tables.credit_html`): displayed,
never interpreted.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
import yaml

from app import tables as T
from dicekit.core import pairs as P
from app.loaders import Round

ROLE_COLOURS = {"chosen": "background-color: rgba(0,160,60,0.25)", "rejected": "background-color: rgba(220,40,40,0.22)",
                "invalid": "color: #999"}
PAGE_SIZES = (25, 50, 100, 200)
FILE_ORDER = "(file order)"
SORTABLE = [FILE_ORDER, "prompt_id", "reward_lr_margin", "reward_margin", "len_diff", "chosen_length", "rejected_length", "source"]


def _fmt(x, spec: str = ".4g") -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def _short(s: pd.Series, n: int) -> pd.Series:
    s = s.fillna("").astype(str).str.replace("\n", " ⏎ ", regex=False)
    return s.where(s.str.len() <= n, s.str.slice(0, n) + "…")


def _range_slider(label: str, values: pd.Series, key: str) -> tuple[float, float] | None:
    """A range slider over ``values`` in about 100 round steps; None while it spans everything."""
    v = values.dropna()
    if v.empty or v.min() == v.max():
        return None
    step = 10.0 ** np.floor(np.log10(float(v.max() - v.min()))) / 100
    lo = float(np.floor(round(float(v.min()) / step, 6)) * step)
    hi = float(np.ceil(round(float(v.max()) / step, 6)) * step)
    lo, hi = round(lo, 10), round(hi, 10)
    picked = st.slider(label, lo, hi, (lo, hi), step=step, key=key)
    return None if tuple(picked) == (lo, hi) else (float(picked[0]), float(picked[1]))


# --- 1. the round at a glance -----------------------------------------------------------------------

def overview(rnd: Round) -> None:
    cfg, pairs = rnd.config(), rnd.pairs()[0]
    samples = rnd.samples()
    st.subheader(f"Round {rnd.t}")
    gen = pairs[pairs["source"] == "generated"] if pairs is not None else None
    c = st.columns(4)
    c[0].metric("α* (alpha used)", _fmt(cfg.get("alpha")), help=f"length unit: {rnd.unit}")
    c[1].metric("generated pairs", "—" if gen is None else len(gen))
    c[2].metric("offline pairs", "—" if pairs is None else int((pairs["source"] == "offline").sum()))
    if samples is not None:
        c[3].metric("valid samples", f"{int(samples['valid'].sum())} / {len(samples)}")
    if gen is not None and len(gen):
        c = st.columns(4)
        c[0].metric(f"mean length chosen ({rnd.unit})", _fmt(gen["chosen_length"].mean(), ".1f"))
        c[1].metric(f"mean length rejected ({rnd.unit})", _fmt(gen["rejected_length"].mean(), ".1f"))
        c[2].metric("mean reward margin", _fmt(gen["reward_margin"].mean(), ".3f"), help="chosen − rejected reward (nats)")
        c[3].metric("mean reward_lr margin", _fmt(gen["reward_lr_margin"].mean(), ".3f"))
    if pairs is None:
        st.info("No pairs.parquet yet: the round has not reached its pair stage.")
    log = rnd.train_log()
    st.markdown("**Training curve**")
    if log is None or "step" not in log or log.empty:
        st.info("No train_log.jsonl for this round.")
    else:
        cols = [c for c in log.columns if c not in ("step", "epoch") and pd.api.types.is_numeric_dtype(log[c])]
        default = [c for c in ("loss", "rewards/accuracies", "rewards/margins") if c in cols] or cols[:1]
        shown = st.multiselect("logged values", cols, default=default, key=f"train_cols_{rnd.run}_{rnd.t}")
        if shown:
            long = log.melt("step", shown, "value_name", "value").dropna()
            st.altair_chart(alt.Chart(long).mark_line(point=True).encode(
                x="step:Q", y=alt.Y("value:Q", title=None), color=alt.Color("value_name:N", title=None)), width="stretch")
    ev = rnd.evals()
    st.markdown("**Evaluations** (round 0 = π_0)")
    if ev is None:
        st.info("No evals/*.json in this run.")
    else:
        st.dataframe(ev.set_index(["round", "name"]).sort_index(), width="stretch")
    with st.expander("config.yaml"):
        st.code(yaml.safe_dump(cfg, sort_keys=False), language="yaml")
    if rnd.metrics() is not None:
        with st.expander("metrics.json"):
            st.json(rnd.metrics())


# --- 2. the pairs table -----------------------------------------------------------------------------

def pairs_table(rnd: Round) -> pd.DataFrame | None:
    """Filters, sort, one page of the table. Returns the filtered, sorted frame (or None)."""
    pairs, index = rnd.pairs()
    if pairs is None:
        st.info("No pairs.parquet for this round.")
        return None
    c = st.columns([2, 3, 3])
    sources = c[0].multiselect("source", ["generated", "offline"], default=["generated", "offline"], key="f_source")
    with c[1]:
        margin = _range_slider("reward_lr margin (chosen − rejected)", pairs["reward_lr_margin"], "f_margin")
    with c[2]:
        len_diff = _range_slider(f"length difference ({rnd.unit}, chosen − rejected)", pairs["len_diff"], "f_len")
    c = st.columns([3, 1])
    text = c[0].text_input("search prompt and responses", key="f_text", placeholder="text to find")
    judge = False
    if "judge_agrees" in pairs:
        judge = c[1].checkbox("judge disagrees only", key="f_judge",
                              help="pairs whose rejected response the judge rates higher than the chosen one")
    view = T.filter_pairs(pairs, sources=sources, margin=margin, len_diff=len_diff, text=text, index=index,
                          judge_disagrees=judge)
    c = st.columns([2, 1, 1, 1])
    by = c[0].selectbox("sort by", SORTABLE, key="sort_by")
    desc = c[1].toggle("descending", value=False, key="sort_desc")
    size = c[2].selectbox("rows per page", PAGE_SIZES, index=1, key="page_size")
    n_pages = max(1, -(-len(view) // size))
    if st.session_state.get("page", 1) > n_pages:
        st.session_state["page"] = n_pages
    page = c[3].number_input("page", 1, n_pages, 1, key="page")
    sorted_view = T.sort_pairs(view, None if by == FILE_ORDER else by, ascending=not desc)
    rows, _ = T.page(sorted_view, int(page), size)
    st.caption(f"{len(view)} of {len(pairs)} pairs match · page {int(page)} of {n_pages}")
    shown = rows[[c for c in ["prompt_id", "source", "chosen_sample_id", "rejected_sample_id", "reward_lr_margin",
                              "reward_margin", "chosen_length", "rejected_length", "len_diff", "judge_agrees"] if c in rows]]
    shown = shown.assign(prompt=_short(rows["prompt"], 60), chosen=_short(rows["chosen"], 80),
                         rejected=_short(rows["rejected"], 80))
    event = st.dataframe(shown, hide_index=True, width="stretch", key="pairs_grid", on_select="rerun",
                         selection_mode="single-row")
    picked = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if picked and st.session_state.get("_grid_pick") != (rnd.t, rows.iloc[picked[0]]["prompt_id"]):
        st.session_state["_grid_pick"] = (rnd.t, rows.iloc[picked[0]]["prompt_id"])
        st.session_state["prompt"] = rows.iloc[picked[0]]["prompt_id"]
    return sorted_view


# --- 3. one prompt ---------------------------------------------------------------------------------

def pick_prompt(view: pd.DataFrame | None, rnd: Round, limit: int = 1000) -> str | None:
    """The prompt selector, over the first ``limit`` prompts of the filtered, sorted table (a row
    picked in the table is added); without pairs, over the round's sampled prompts."""
    source = view if view is not None else rnd.samples()
    if source is None or source.empty:
        return None
    ids = list(dict.fromkeys(source["prompt_id"].head(limit)))
    picked = st.session_state.get("_grid_pick")
    if picked and picked[0] == rnd.t and picked[1] not in ids and picked[1] in set(source["prompt_id"]):
        ids.insert(0, picked[1])
    if st.session_state.get("prompt") not in ids:
        st.session_state["prompt"] = ids[0]
    head = source.head(limit)
    texts = dict(zip(head["prompt_id"], head["prompt"])) if "prompt" in head else {}
    label = lambda p: f"{p} — {str(texts[p])[:70]}" if p in texts else str(p)  # noqa: E731
    return st.selectbox("prompt (from the filtered table)", ids, key="prompt", format_func=label)


def _alpha_grid(rnd: Round) -> np.ndarray:
    sweep, alpha = rnd.alpha_sweep(), float(rnd.config().get("alpha") or 0.0)
    if sweep is not None and len(sweep) > 1:
        return np.sort(sweep["alpha"].to_numpy(dtype=np.float64))
    return np.round(np.linspace(0.0, max(4 * alpha, 0.01), 101), 12)


def _pair_box(row: pd.Series, side: str, unit: str) -> None:
    sid = row.get(f"{side}_sample_id")
    title = f"**{side.capitalize()}**" + ("" if pd.isna(sid) else f" — sample {int(sid)}")
    st.markdown(title)
    st.caption(f"reward {_fmt(row.get(f'{side}_reward'), '.3f')} · reward_lr {_fmt(row.get(f'{side}_reward_lr'), '.3f')}"
               f" · length {_fmt(row.get(f'{side}_length'), '.0f')} {unit}"
               + (f" · judge {_fmt(row.get(f'{side}_judge_quality'), '.2f')}" if f"{side}_judge_quality" in row else ""))
    st.code(str(row[side]), language=None, wrap_lines=True)


def prompt_view(rnd: Round, prompt_id: str) -> None:
    pairs = rnd.pairs()[0]
    row = None if pairs is None else pairs[pairs["prompt_id"] == prompt_id]
    samples = rnd.prompt_samples(prompt_id)
    prompt = row.iloc[0]["prompt"] if row is not None and len(row) else (
        samples.iloc[0]["prompt"] if samples is not None and len(samples) else "")
    st.markdown(f"**Prompt `{prompt_id}`**")
    st.code(str(prompt), language=None, wrap_lines=True)
    if row is not None and len(row):
        r = row.iloc[0]
        st.markdown(f"**Training pair** ({r['source']}, α = {_fmt(r['alpha'])})"
                    + ("" if "judge_agrees" not in r or pd.isna(r["judge_agrees"]) else
                       (" — judge agrees" if r["judge_agrees"] else " — ⚠ judge disagrees with the implicit reward")))
        left, right = st.columns(2)
        with left:
            _pair_box(r, "chosen", rnd.unit)
        with right:
            _pair_box(r, "rejected", rnd.unit)
    if samples is None or samples.empty:
        st.info("No samples for this prompt (offline pairs have none).")
        return
    _samples_at_alpha(rnd, samples)


def _samples_at_alpha(rnd: Round, samples: pd.DataFrame) -> None:
    grid = _alpha_grid(rnd)
    alpha_used = float(rnd.config().get("alpha") or 0.0)
    step = float(np.min(np.diff(grid))) if len(grid) > 1 else 0.001
    st.markdown(f"**All {len(samples)} samples ranked by reward_lr = reward − α·length** ({rnd.unit})")
    alpha = st.slider("α", float(grid[0]), float(grid[-1]), float(np.clip(alpha_used, grid[0], grid[-1])),
                      step=step, format="%.4f", key=f"alpha_{rnd.run}_{rnd.t}")
    ranked, pair = T.rank_samples(samples, alpha, rnd.unit)
    _, used = T.rank_samples(samples, alpha_used, rnd.unit)
    if pair["chosen"] is None:
        st.warning("No valid, scored samples: this prompt builds no pair.")
        return
    note = " (degenerate: equal scores or identical responses; the pair builder drops it)" if pair["degenerate"] else ""
    st.markdown(f"At α = {alpha:.4f}: **chosen = sample {pair['chosen']}**, **rejected = sample {pair['rejected']}**{note}"
                f" — at the round's α = {alpha_used:.4g}: chosen {used['chosen']}, rejected {used['rejected']}")
    cols = [c for c in ["rank", "role", "sample_id", "reward", "length", "reward_lr", "judge_quality", "finish_reason",
                        "response"] if c in ranked]
    table = ranked[cols].assign(response=_short(ranked["response"], 100))
    styled = table.style.apply(lambda r: [ROLE_COLOURS.get(r["role"], "")] * len(r), axis=1).format(
        {"reward": "{:.3f}", "reward_lr": "{:.3f}", "length": "{:.0f}", "judge_quality": "{:.2f}"}, na_rep="—")
    st.dataframe(styled,
                 hide_index=True, width="stretch", key="samples_table")
    lines = ranked[ranked["reward_lr"].notna()]
    lo, hi = float(grid[0]), float(grid[-1])
    data = pd.concat([lines.assign(alpha=a, score=P.reward_lr(lines["reward"], lines["length"], a)) for a in (lo, hi)])
    data = data.assign(sample=data["sample_id"].astype(str), emphasis=data["role"].replace("", "other"))
    chart = alt.Chart(data[["alpha", "score", "sample", "emphasis"]]).mark_line().encode(
        x=alt.X("alpha:Q", title="α"), y=alt.Y("score:Q", title="reward_lr"), color=alt.Color("sample:N"),
        strokeWidth=alt.condition(alt.datum.emphasis != "other", alt.value(4), alt.value(1)),
        tooltip=["sample", "emphasis"])
    rule = alt.Chart(pd.DataFrame({"alpha": [alpha]})).mark_rule(strokeDash=[4, 4]).encode(x="alpha:Q")
    st.altair_chart(chart + rule, width="stretch")
    with st.expander("which pair each α of the grid chooses"):
        st.dataframe(T.alpha_regions(samples, grid, rnd.unit), hide_index=True)
    for _, s in ranked.iterrows():
        label = f"#{s['rank'] if pd.notna(s['rank']) else '–'} · sample {s['sample_id']} {s['role']}"
        with st.expander(label, expanded=s["role"] in ("chosen", "rejected")):
            st.code(str(s["response"]), language=None, wrap_lines=True)


# --- 4. the same prompt across rounds ---------------------------------------------------------------

def across_rounds(run: str, rounds: list[int], prompt_id: str) -> None:
    st.markdown(f"**Prompt `{prompt_id}` in every round: the chosen response of its training pair**")
    cols = st.columns(min(len(rounds), 3))
    for i, t in enumerate(rounds):
        rnd = Round(run, t)
        pairs = rnd.pairs()[0]
        row = None if pairs is None else pairs[pairs["prompt_id"] == prompt_id]
        with cols[i % len(cols)]:
            st.markdown(f"**Round {t}**")
            if row is None or row.empty:
                st.caption("no pair for this prompt in this round")
                continue
            r = row.iloc[0]
            st.caption(f"{r['source']} · α {_fmt(r['alpha'])} · reward {_fmt(r['chosen_reward'], '.3f')} · "
                       f"length {_fmt(r['chosen_length'], '.0f')} {rnd.unit} (rejected {_fmt(r['rejected_length'], '.0f')})")
            st.code(str(r["chosen"]), language=None, wrap_lines=True)


# --- 5. per-token credit ----------------------------------------------------------------------------

def token_credit(rnd: Round, prompt_id: str | None) -> None:
    credit = rnd.token_credit()
    if credit is None:
        st.info(f"No per-token credit computed for round {rnd.t} (round_{rnd.t}/token_credit.parquet).")
        return
    mine = credit[credit["prompt_id"] == prompt_id]
    rows = mine if len(mine) else credit.head(1000)
    if not len(mine):
        st.caption("No credit for the selected prompt; showing the responses that have it.")
    keys = list(zip(rows["prompt_id"], rows["sample_id"]))
    key = st.selectbox("response", keys, format_func=lambda k: f"{k[0]} · sample {k[1]}", key="credit_key")
    r = rows[(rows["prompt_id"] == key[0]) & (rows["sample_id"] == key[1])].iloc[0]
    samples = rnd.samples()
    reward = None
    if samples is not None:
        hit = samples[(samples["prompt_id"] == key[0]) & (samples["sample_id"] == key[1])]
        reward = float(hit["reward"].iloc[0]) if len(hit) else None
    st.caption(f"{len(r['tokens'])} tokens · Σ log-ratio = {float(np.sum(r['logratio'])):.3f}"
               f" (sample reward {_fmt(reward, '.3f')}) · green: the policy likes the token more than the reference")
    st.html(T.credit_html(r["tokens"], r["logratio"]))


# --- 6. the α sweep ---------------------------------------------------------------------------------

def alpha_sweep(rnd: Round) -> None:
    sweep, alpha = rnd.alpha_sweep(), rnd.config().get("alpha")
    if sweep is None:
        st.info("No alpha_sweep.csv for this round.")
    else:
        st.markdown(f"**Mean length(chosen) − length(rejected) per α** (α = {_fmt(alpha)} used)")
        base = alt.Chart(sweep).encode(x=alt.X("alpha:Q", title="α"))
        line = base.mark_line(point=len(sweep) <= 60).encode(y=alt.Y("mean_len_diff:Q", title=f"mean length diff ({rnd.unit})"),
                                                             tooltip=["alpha", "mean_len_diff", "n_pairs"])
        layers = line + alt.Chart(pd.DataFrame({"y": [0]})).mark_rule(color="grey").encode(y="y:Q")
        if alpha is not None:
            layers += alt.Chart(pd.DataFrame({"alpha": [alpha]})).mark_rule(color="red").encode(x="alpha:Q")
        st.altair_chart(layers, width="stretch")
    samples = rnd.samples()
    if samples is None:
        st.info("No samples.parquet: length-difference histograms need the samples.")
        return
    grid = [float(a) for a in _alpha_grid(rnd)]
    used = min(grid, key=lambda a: abs(a - float(alpha))) if alpha is not None else grid[0]
    picked = st.multiselect("α values for the histograms", grid, default=sorted({grid[0], used, grid[-1]}),
                            key=f"hist_alphas_{rnd.run}_{rnd.t}", format_func=lambda a: f"{a:.4g}")
    if picked:
        hist = rnd.len_diff_histograms(picked)
        st.markdown(f"**length(chosen) − length(rejected) of the pairs each α builds** ({rnd.unit})")
        st.altair_chart(alt.Chart(hist).mark_bar(opacity=0.8).encode(
            x=alt.X("lo:Q", bin="binned", title=f"length difference ({rnd.unit})"), x2="hi:Q",
            y=alt.Y("count:Q", title="pairs"), row=alt.Row("alpha:N", title="α"),
            tooltip=["alpha", "lo", "hi", "count"]).properties(height=140, width=600))
