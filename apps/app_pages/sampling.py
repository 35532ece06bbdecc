"""Sampling: temperature, top-k and top-p with live probability bars, and a generate button."""

import app_shell
import streamlit as st

import interp


def render() -> None:
    st.title("Sampling")
    ctx = app_shell.context()
    cols = st.columns(3)
    temperature = cols[0].slider("Temperature (0 = greedy)", 0.0, 2.0, 1.0, 0.05, key="samp_temperature")
    top_k = cols[1].slider("Top-k (0 = off)", 0, 100, 0, key="samp_top_k")
    top_p = cols[2].slider("Top-p (1 = off)", 0.05, 1.0, 1.0, 0.05, key="samp_top_p")
    settings = dict(temperature=temperature, top_k=top_k or None, top_p=None if top_p >= 1.0 else top_p)

    step = app_shell.cached(interp.next_token, ctx.key, ctx.prompt, **settings)
    st.plotly_chart(step.figure(), key="samp_fig")
    with st.expander("Top tokens after every step"):
        st.dataframe(step.to_frame())

    st.subheader("Generate")
    cols = st.columns([2, 1, 1])
    max_new = cols[0].slider("New tokens", 1, 64, 20, key="samp_max_new")
    seed = cols[1].number_input("Seed", 0, 2**31 - 1, 0, key="samp_seed")
    if cols[2].button("Generate", key="samp_generate", type="primary"):
        with st.spinner("Sampling…"), app_shell.holding(ctx):
            st.session_state["samp_result"] = interp.generate(
                ctx.model, ctx.prompt, max_new_tokens=max_new, seed=int(seed), **settings
            )
    result = st.session_state.get("samp_result")
    if result is not None:
        st.markdown(f"**{ctx.prompt}**{result.text}")
        st.caption(f"stopped: {result.stop_reason} · seed {result.seed} · {result.forward_passes} forward passes")
        st.plotly_chart(result.figure(), key="samp_gen_fig")


app_shell.run_page(render)
