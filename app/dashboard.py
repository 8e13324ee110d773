"""The DICE dashboard: ``streamlit run app/dashboard.py -- RUN_DIR [RUN_DIR ...]`` (or ``dicekit app``).

Pick a run and a round, then: the round at a glance, the pairs table (filter, sort, paginate), one
prompt (chosen vs rejected, its K samples ranked by reward_lr with an α slider showing which pair
each α chooses), the prompt across rounds, per-token credit, and the α sweep. It reads run folders
only (through :mod:`dicekit.view.runs`); the pair an α chooses comes from :mod:`dicekit.core.pairs`, the
function the pair builder uses. Model output is displayed as text, never executed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_CHECKOUT = str(Path(__file__).resolve().parents[1])  # `app` and `dicekit` from the checkout
if _CHECKOUT not in sys.path:  # the script reruns on every interaction
    sys.path.insert(0, _CHECKOUT)

from app import sections  # noqa: E402
from app.loaders import Round  # noqa: E402
from dicekit.view import runs  # noqa: E402
from dicekit.errors import UserError  # noqa: E402


def run_dirs(argv: list[str]) -> list[str]:
    """Run folders given after ``--`` on the streamlit command line (as absolute paths)."""
    return [str(Path(a).resolve()) for a in argv if not a.startswith("-")]


def main() -> None:
    st.set_page_config(page_title="dicekit dashboard", layout="wide")
    dirs = run_dirs(sys.argv[1:])
    if not dirs:
        st.error("No run folder given: `dicekit app RUN_DIR` or `streamlit run app/dashboard.py -- RUN_DIR`.")
        return
    try:
        for d in dirs:
            runs.check_run_dir(d)
    except UserError as err:
        st.error(str(err))
        return
    with st.sidebar:
        st.title("dicekit")
        run = st.selectbox("run", dirs, key="run", format_func=lambda d: Path(d).name)
        rounds = runs.rounds(run)
        t = st.selectbox("round", rounds, index=len(rounds) - 1, key=f"round_{run}")
        st.caption(run)
    rnd = Round(run, t)
    try:
        tabs = st.tabs(["Round", "Pairs", "Prompt", "Across rounds", "Token credit", "α sweep"])
        with tabs[0]:
            sections.overview(rnd)
        with tabs[1]:
            view = sections.pairs_table(rnd)
        with tabs[2]:
            prompt_id = sections.pick_prompt(view, rnd)
            if prompt_id is not None:
                sections.prompt_view(rnd, prompt_id)
            elif view is not None:
                st.info("No pair matches the filters of the Pairs tab.")
        with tabs[3]:
            if prompt_id is not None:
                sections.across_rounds(run, rounds, prompt_id)
        with tabs[4]:
            sections.token_credit(rnd, prompt_id)
        with tabs[5]:
            sections.alpha_sweep(rnd)
    except UserError as err:
        st.error(str(err))


main()
