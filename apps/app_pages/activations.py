"""Activations browser: one layer and site as positions × dimensions, per-token norms, one token's vector."""

import app_shell
import streamlit as st

import interp

SITE_LABELS = {
    "resid_pre": "residual stream, block input (resid pre)",
    "resid_mid": "residual stream after attention (resid mid)",
    "resid_post": "residual stream, block output (resid post)",
    "attn_out": "attention output",
    "mlp_out": "MLP output",
    "neurons": "MLP neurons",
}


def render() -> None:
    """Draw the activations browser: a layer and site's heat map, per-token norms and one token's vector."""
    st.title("Activations browser")
    ctx = app_shell.context()
    left, middle, right = st.columns([2, 3, 2])
    layer = left.slider("Layer", 0, ctx.info.n_layers - 1, 0, key="act_layer")
    site = middle.selectbox("Site", list(interp.ACTIVATION_SITES), format_func=SITE_LABELS.get, key="act_site")
    view = app_shell.cached(interp.activation_view, ctx.key, ctx.prompt, layer, site)
    width = view.values.shape[1]
    top = right.slider(
        "Show top dims (by peak |value|)",
        1,
        width,
        min(width, 64 if site == "neurons" else width),
        key=f"act_top_{site}",
    )

    labels = app_shell.token_labels(view.tokens)
    st.plotly_chart(view.figure(top=None if top == width else top), key="act_heatmap")
    st.plotly_chart(view.norms_figure(), key="act_norms")

    st.subheader("One token's vector")
    choice = st.selectbox("Token", labels, index=len(labels) - 1, key="act_token")
    summary = view.position_summary(labels.index(choice))
    cols = st.columns(4)
    cols[0].metric("L2 norm", f"{summary.norm:.3f}")
    cols[1].metric("mean", f"{summary.mean:.3f}")
    cols[2].metric("std", f"{summary.std:.3f}")
    cols[3].metric("width", str(width))
    st.caption(f"Largest |value| {'neurons' if site == 'neurons' else 'dimensions'} at position {summary.position}")
    st.dataframe(summary.to_frame(), hide_index=True)


app_shell.run_page(render)
