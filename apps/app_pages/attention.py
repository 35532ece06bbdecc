"""Attention: every head of a layer on one colour scale, one head's pattern, and what a token attends to."""

import streamlit as st

import app_shell


def render() -> None:
    st.title("Attention")
    ctx = app_shell.context()
    layer = st.slider("Layer", 0, ctx.info.n_layers - 1, 0, key="attn_layer")
    view = app_shell.cached("interp.attention_view", ctx.key, ctx.prompt, layer)
    if ctx.info.is_gqa:
        st.caption(
            f"Grouped-query attention: {view.n_heads} query heads share {view.n_kv_heads} key/value heads "
            "(the kv index is in each title)."
        )

    heads = list(range(view.n_heads))
    labels = app_shell.token_labels(view.tokens)
    # Clicks: a grid cell picks its head (one trace per head), a cell of the head's pattern picks its query row.
    grid_point = app_shell.clicked("attn_grid")
    if grid_point and grid_point.get("curve_number") in heads:
        st.session_state["attn_head"] = grid_point["curve_number"]
    pattern_point = app_shell.clicked("attn_pattern")
    if pattern_point and pattern_point.get("y") in labels:
        st.session_state["attn_query"] = pattern_point["y"]

    st.plotly_chart(view.grid_figure(), key="attn_grid", on_select="rerun", selection_mode="points")
    left, right = st.columns([3, 2])
    with right:
        head = st.selectbox("Head (or click one in the grid)", heads, key="attn_head")
        query = st.selectbox("Query token (or click a row)", labels, index=len(labels) - 1, key="attn_query")
        position = labels.index(query)
        st.markdown(f"**What {query} attends to** (head {head})")
        st.dataframe(view.attends_to(head, position), hide_index=True)
    with left:
        st.plotly_chart(
            view.head_figure(head, query=position), key="attn_pattern", on_select="rerun", selection_mode="points"
        )


app_shell.run_page(render)
