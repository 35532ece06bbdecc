"""Attention: every head of a layer on one colour scale, one head's pattern, and what a token attends to."""

import app_shell
import streamlit as st

import interp


def render() -> None:
    """Draw the attention page: a layer's heads on one colour scale, one head's pattern, one token's row."""
    st.title("Attention")
    ctx = app_shell.context()
    layer = st.slider("Layer", 0, ctx.info.n_layers - 1, 0, key="attn_layer")
    view = app_shell.cached(interp.attention_view, ctx.key, ctx.prompt, layer)
    if ctx.info.is_gqa:
        st.caption(
            f"Grouped-query attention: {view.n_heads} query heads share {view.n_kv_heads} key/value heads "
            "(the kv index is in each title)."
        )

    heads = list(range(view.n_heads))
    labels = app_shell.token_labels(view.tokens)
    st.plotly_chart(view.grid_figure(), key="attn_grid")
    left, right = st.columns([3, 2])
    with right:
        head = st.selectbox("Head", heads, key="attn_head")
        query = st.selectbox("Query token", labels, index=len(labels) - 1, key="attn_query")
        position = labels.index(query)
        st.markdown(f"**What {query} attends to** (head {head})")
        st.dataframe(view.attends_to(head, position), hide_index=True)
    with left:
        st.plotly_chart(view.head_figure(head, query=position), key="attn_pattern")


app_shell.run_page(render)
