"""Sampling: temperature, top-k and top-p with live probability bars, and a generate button."""

import app_shell
import streamlit as st

import interp
from interp.generation.plots import effect_text, step_label


def render() -> None:
    """Draw the sampling page: temperature, top-k and top-p probability bars, and a generate button."""
    st.title("Sampling")
    ctx = app_shell.context()
    cols = st.columns(3)
    temperature = cols[0].slider("Temperature (0 = greedy)", 0.0, 2.0, 1.5, 0.05, key="samp_temperature")
    top_k = cols[1].slider("Top-k (0 = off)", 0, 100, 20, key="samp_top_k")
    top_p = cols[2].slider("Top-p (1 = off)", 0.05, 1.0, 0.9, 0.05, key="samp_top_p")
    st.caption("The model's next-token distribution goes through four steps before a token is drawn. The defaults "
               "switch each step on so that each has something to do: temperature above 1 lifts the unlikely "
               "tokens, top-k keeps the k most probable, top-p the fewest whose probability reaches p.")
    settings = dict(temperature=temperature, top_k=top_k or None, top_p=None if top_p >= 1.0 else top_p)

    step = app_shell.cached(interp.next_token, ctx.key, ctx.prompt, **settings)
    log = st.toggle("Log-scale probabilities", value=True, key="samp_log",
                    help="A confident model puts almost all probability on one token; on a log axis the other "
                         "tokens, which temperature lifts and top-k/top-p cut, stay visible.")
    st.plotly_chart(step.figure(log=log), key="samp_fig")
    effects = step.step_effects()
    st.markdown(
        f"Of **{effects[0].kept:,}** tokens, **{effects[-1].kept:,}** can be sampled. "
        + " ".join(f"**{step_label(e.step, step)}** {effect_text(e)}." for e in effects[1:])
    )
    st.caption("What each step did: removed probability is the share the previous step gave to the tokens "
               "this step cut (the rest is renormalised); entropy is in nats, and exp(entropy) is the "
               "effective number of choices.")
    st.dataframe(step.effects_frame(), hide_index=True,
                 column_config={"removed probability": st.column_config.NumberColumn(format="%.3g"),
                                "top token p": st.column_config.NumberColumn(format="%.4f"),
                                "entropy (nats)": st.column_config.NumberColumn(format="%.3f")})
    with st.expander("Top tokens after every step"):
        st.dataframe(step.to_frame(), hide_index=True)

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
