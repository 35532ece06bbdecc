"""Heads: the census of head behaviours, the induction report, and knocking out one head live."""

import app_shell
import streamlit as st

import interp


def render() -> None:
    """Draw the heads page: the head census, the induction report, and a live single-head knockout."""
    st.title("Heads")
    ctx = app_shell.context()

    st.subheader("Head census")
    st.caption(
        "Each head's attention mass on the keys that define a behaviour (previous token, duplicate token, "
        "induction, BOS, self, local window), measured on the census's default text (see `interp.head_census`), "
        "and the loss increase when the head is mean-ablated. Cells carry each head's label."
    )
    with st.spinner("Scoring every head…"):
        census = app_shell.cached(interp.head_census, ctx.key)
    st.plotly_chart(census.figure(), key="heads_census")
    with st.expander("Census table"):
        st.dataframe(census.to_frame(), hide_index=True)

    st.subheader("Induction heads")
    st.caption(
        "On [BOS] + r + r with random tokens r: attention from each second-copy token to the token after its "
        "first occurrence (induction), the OV circuit's copying score, and the loss increase under ablation."
    )
    with st.spinner("Running the induction probe…"):
        report = app_shell.cached(interp.find_induction_heads, ctx.key)
    st.plotly_chart(report.figure(), key="heads_induction")
    with st.expander("Induction table"):
        st.dataframe(report.to_frame(), hide_index=True)

    st.subheader("Knock out a head on your prompt")
    cols = st.columns(3)
    layer = cols[0].selectbox("Layer", range(ctx.info.n_layers), key="ko_layer")
    head = cols[1].selectbox("Head", range(ctx.info.n_heads), key="ko_head")
    method = cols[2].radio("Ablation", ["zero", "mean"], horizontal=True, key="ko_method")
    result = app_shell.cached(interp.knock_out_head, ctx.key, ctx.prompt, layer, head, method)
    metrics = st.columns(3)
    metrics[0].metric("clean loss (nats)", f"{result.clean_loss:.3f}")
    metrics[1].metric("knocked-out loss", f"{result.ablated_loss:.3f}", f"{result.delta:+.3f}", delta_color="inverse")
    metrics[2].metric("tokens scored", str(len(result.clean)))
    st.plotly_chart(result.figure(), key="heads_knockout")


app_shell.run_page(render)
