"""interp dashboard: poke at every layer of a real model.

Run with ``make dashboard`` (or ``streamlit run apps/dashboard.py``). This entry script only sets
up the page, the shared sidebar and the navigation; each page lives in ``apps/pages/`` and only
calls ``interp`` / ``probes`` and draws what they return.
"""

from pathlib import Path

import streamlit as st

import app_shell

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="interp dashboard", page_icon="🔬", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "walkthrough.py", title="Walkthrough", icon="🚶", default=True),
        st.Page(PAGES / "activations.py", title="Activations browser", icon="🧮"),
        st.Page(PAGES / "attention.py", title="Attention", icon="👀"),
        st.Page(PAGES / "heads.py", title="Heads", icon="🧠"),
        st.Page(PAGES / "logit_lens.py", title="Logit lens", icon="🔭"),
        st.Page(PAGES / "fact_editor.py", title="Fact editor", icon="✏️"),
        st.Page(PAGES / "sampling.py", title="Sampling", icon="🎲"),
        st.Page(PAGES / "probing.py", title="Probes", icon="📐"),
    ]
)
app_shell.sidebar()
navigation.run()
