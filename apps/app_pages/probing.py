"""Probes: linear-probe accuracy per layer against a control task, for a reference-world probe task."""

import app_shell
import streamlit as st

import probes


def render() -> None:
    """Draw the probes page: linear-probe accuracy per layer against a control task."""
    st.title("Probes")
    ctx = app_shell.context(need_prompt=False)
    cols = st.columns(2)
    task = cols[0].selectbox("Probe task", probes.TASKS, key="probe_task")
    site = cols[1].selectbox("Site", ["resid_post", "resid_pre", "resid_mid", "attn_out", "mlp_out"], key="probe_site")
    st.caption(
        "A logistic-regression probe per layer, trained and tested on different subjects; the control task "
        "(Hewitt & Liang) gives each word a random fixed label, so selectivity = accuracy − control accuracy "
        "shows what the probe reads from the model rather than memorises."
    )
    with st.spinner(f"Fitting probes for {task} on every layer…"):
        report = app_shell.cached(probes.fit, ctx.key, task, site=site)
    st.plotly_chart(report.figure(), key="probe_fig")
    st.dataframe(report.to_frame(), hide_index=True)


app_shell.run_page(render)
