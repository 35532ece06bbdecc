"""interp dashboard: poke at every layer of a real model.

Run with ``make dashboard`` (or ``streamlit run apps/dashboard.py``). This entry script only sets
up the page, the shared sidebar and the navigation; each page lives in ``apps/app_pages/`` and only
calls ``interp`` / ``probes`` and draws what they return.

The file is read twice. ``streamlit run`` first imports it as the module ``dashboard`` to look for an
``st.App``: that branch builds one whose lifespan starts the warm-up (``apps/warm.py``), Streamlit's
only hook that runs when the server starts. Each browser session then runs the file as ``__main__``
(as AppTest does), which draws the app.
"""

from pathlib import Path

import streamlit as st

if __name__ == "__main__":  # a session's run of the script
    import app_shell

    # Not "pages/": Streamlit treats a pages/ folder beside the entry script as a legacy multipage app
    # until st.navigation has run once, so a first visit straight to /attention would skip this script.
    PAGES = Path(__file__).resolve().parent / "app_pages"

    st.set_page_config(page_title="interp dashboard", page_icon="🔬", layout="wide")
    # Icons from the Material Symbols font Streamlit bundles, so they render without emoji fonts or network.
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
            st.Page(PAGES / "features.py", title="Features", icon=":material/scatter_plot:"),
            st.Page(PAGES / "circuits.py", title="Circuits", icon=":material/account_tree:"),
        ]
    )
    app_shell.sidebar()
    navigation.run()
else:  # imported by `streamlit run`, once per server process: serve this file, warming up at start-up
    import warm

    app = st.App(__file__, lifespan=warm.lifespan)
