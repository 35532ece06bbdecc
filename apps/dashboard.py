"""interp dashboard: poke at every layer of a real model.

Run with ``make dashboard`` (or ``streamlit run apps/dashboard.py``). This entry script only sets
up the page, the shared sidebar and the navigation; each page lives in ``apps/pages/`` and only
calls ``interp`` / ``probes`` and draws what they return.
"""

from pathlib import Path

import streamlit as st

import app_shell

# Icons from the Material Symbols font Streamlit bundles, so they render without emoji fonts or network.
PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="interp dashboard", page_icon="🔬", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "walkthrough.py", title="Walkthrough", icon=":material/directions_walk:", default=True),
        st.Page(PAGES / "activations.py", title="Activations browser", icon=":material/grid_on:"),
        st.Page(PAGES / "attention.py", title="Attention", icon=":material/visibility:"),
        st.Page(PAGES / "heads.py", title="Heads", icon=":material/hub:"),
        st.Page(PAGES / "logit_lens.py", title="Logit lens", icon=":material/layers:"),
        st.Page(PAGES / "fact_editor.py", title="Fact editor", icon=":material/edit_note:"),
        st.Page(PAGES / "sampling.py", title="Sampling", icon=":material/casino:"),
        st.Page(PAGES / "probing.py", title="Probes", icon=":material/straighten:"),
    ]
)
app_shell.sidebar()
navigation.run()
