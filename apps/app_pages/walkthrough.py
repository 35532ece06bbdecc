"""Walkthrough: step one token through the model, stage by stage, with the real model's numbers."""

import app_shell
import streamlit as st

import interp

STAGES = {
    "tokens": (
        "1 · Tokens",
        "The text is cut into tokens by byte-pair encoding: start from single bytes and apply the learned merges "
        "in order of rank. Each token becomes an integer id; the model never sees characters. In the tables ␣ marks a "
        "space: a byte-level tokenizer keeps the space before a word on the word's first token (tokenizer files "
        "write it as Ġ), so ' Paris' and 'Paris' are different tokens.",
    ),
    "embeddings": (
        "2 · Embeddings",
        "Each id selects one row of the embedding matrix, a vector of d_model numbers. Tokens used in similar "
        "contexts end up with similar rows: here are the nearest neighbours (cosine) of the selected token, and, "
        "if you ask for one, an analogy a − b + c.",
    ),
    "positions": (
        "3 · Positions",
        "Attention alone ignores order, so position is added: GPT-2 learns one vector per position (similar "
        "positions get similar vectors); Llama rotates query/key pairs by position-dependent angles (RoPE), so "
        "their dot product depends on the distance between tokens.",
    ),
    "attention": (
        "4 · One attention head",
        "The selected token's query is compared with every earlier key (q·k / √d_head), future positions are "
        "masked, and a softmax turns scores into weights. The head's output is the weighted mix of the value vectors.",
    ),
    "heads": (
        "5 · All heads of the layer",
        "Every head of the layer does the same thing with its own weights, so each learns to look for "
        "something different. With grouped-query attention several query heads share one key/value head.",
    ),
    "ffn": (
        "6 · The MLP (feed-forward) block",
        "After attention, each position goes through an MLP on its own. Its neurons fire for patterns in the "
        "residual stream; reading a neuron's output weights through the unembedding shows the tokens it promotes.",
    ),
    "residual": (
        "7 · The residual stream",
        "Every block adds its output to a running sum, the residual stream. Because the final layer norm and the "
        "unembedding are (almost) linear, the predicted token's logit splits into one contribution per block: "
        "direct logit attribution.",
    ),
    "output": (
        "8 · Output",
        "The last residual vector is normalised and multiplied by the unembedding to give one logit per "
        "vocabulary token; softmax (after temperature, top-k and top-p) gives the probabilities we sample from.",
    ),
    "architecture": (
        "9 · Architecture",
        "The same recipe at different sizes: this model's shape beside the other reference model and some public "
        "models (layers, heads, key/value heads, feed-forward type).",
    ),
}


# Stage 6 on a mixture-of-experts layer, where the journey shows the router instead of neurons.
EXPERTS = (
    "6 · The mixture-of-experts block",
    "This model has no single MLP: each block holds several expert MLPs and a router. For every token the "
    "router scores all experts; only the top-k run, and their outputs are added up weighted by the router's "
    "probabilities (Mixtral renormalises them over the chosen k). Parameters grow with the number of experts "
    "while each token pays for only k "
    "of them. Left: each token's chosen experts and weights; middle: how many tokens each expert took (its "
    "load); right: how much each expert chosen for the selected token writes, labelled with the token it "
    "promotes most.",
)


def _step() -> None:
    names = list(STAGES)
    current = st.session_state.get("walk_stage", names[0])
    st.session_state["walk_stage"] = names[(names.index(current) + 1) % len(names)]


def render() -> None:
    """Draw the walkthrough: one token followed through the model, stage by stage."""
    st.title("Walkthrough: a token's journey")
    ctx = app_shell.context()
    labels = app_shell.token_labels(interp.str_tokens(ctx.model, interp.tokenize(ctx.model, ctx.prompt).tokens[0]))

    with st.expander("Settings: which token, layer and head to follow", expanded=False):
        cols = st.columns(3)
        position = labels.index(cols[0].selectbox("Token", labels, index=len(labels) - 1, key="walk_token"))
        layer = cols[1].selectbox("Layer", range(ctx.info.n_layers), key="walk_layer")
        head = cols[2].selectbox("Head", range(ctx.info.n_heads), key="walk_head")
        words = st.text_input(
            "Analogy a, b, c (a − b + c), optional", key="walk_analogy", placeholder="king, man, woman"
        )
        app_shell.check_text("analogy", words)
    analogy = tuple(w.strip() for w in words.split(",")) if words.strip() else None
    if analogy is not None and len(analogy) != 3:
        raise ValueError(f"the analogy needs three words separated by commas, got {len(analogy)}: {words!r}")

    left, right = st.columns([4, 1])
    left.selectbox("Stage", list(STAGES), format_func=lambda s: STAGES[s][0], key="walk_stage")
    right.button("Step ▶", on_click=_step, key="walk_step", help="Go to the next stage", width="stretch")
    stage = st.session_state["walk_stage"]

    with st.spinner("Following the token through the model…"):
        journey = app_shell.cached(
            interp.journey.run,
            ctx.key,
            ctx.prompt,
            layer=layer,
            head=head,
            query=position,
            position=position,
            analogy_words=analogy,
        )
    result = getattr(journey, stage)
    moe = isinstance(result, interp.journey.ExpertRouting)
    title, text = EXPERTS if moe else STAGES[stage]
    st.subheader(title)
    st.markdown(text)
    # The output stage on a log axis: a trained model puts almost all probability on one token.
    st.plotly_chart(result.figure(log=True) if stage == "output" else result.figure(), key=f"walk_fig_{stage}")
    if stage == "embeddings" and journey.analogy is not None:
        st.plotly_chart(journey.analogy.figure(), key="walk_fig_analogy")
    with st.expander("Numbers"):
        if stage == "tokens":
            st.dataframe(result.tokens_frame(), hide_index=True)
        if moe:
            st.dataframe(result.experts_frame(), hide_index=True)
        st.dataframe(result.to_frame(), hide_index=True)


app_shell.run_page(render)
