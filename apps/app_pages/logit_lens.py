"""Logit lens: what each layer would predict, and a target token's path across layers."""

import app_shell
import streamlit as st

import interp


def render() -> None:
    st.title("Logit lens")
    ctx = app_shell.context()
    left, right = st.columns([1, 2])
    kind = left.radio("Lens", ["logit", "tuned"], horizontal=True, key="lens_kind")
    target = right.text_input(
        "Target token to follow (optional, one token, mind the leading space)", key="lens_target", placeholder=" Paris",
    )
    target = app_shell.check_text("lens target", target) or None
    if kind == "logit":
        st.caption("Each layer's residual stream decoded with the model's final norm and unembedding.")
        with st.spinner("Decoding every layer…"):
            lens = app_shell.cached(interp.logit_lens, ctx.key, ctx.prompt, target=target)
    else:
        st.caption("Each layer's residual stream first translated by a learned affine map (tuned lens), then decoded.")
        tuned = app_shell.cached(interp.TunedLens.load_for, ctx.key)
        with app_shell.holding(ctx):
            lens = tuned.apply(ctx.model, ctx.prompt, target=target)
    st.plotly_chart(lens.figure(), key="lens_fig")

    frame = lens.to_frame()
    if target is not None:
        last = frame[frame.position == frame.position.max()]
        st.subheader(f"Target {target!r} at the last position")
        st.dataframe(last[["layer", "target_prob", "target_rank", "top_token", "top_prob"]], hide_index=True)
    with st.expander("Full table (layer × position)"):
        st.dataframe(frame, hide_index=True)


app_shell.run_page(render)
