"""Logit lens: what each layer would predict, and a target token's path across layers."""

import app_shell
import streamlit as st

import interp
from interp.lens.plots import row_labels

WINDOW = 16  # positions the heat map shows at once; a longer prompt gets a slider to move the window


def render() -> None:
    """Draw the logit-lens page: each layer's prediction, and a target token's path across layers."""
    st.title("Logit lens")
    st.caption("Decode the residual stream after every layer as if it were the last: what would the model "
               "predict next if it stopped there?")
    ctx = app_shell.context()
    left, right = st.columns([1, 2])
    kind = left.radio("Lens", ["logit", "tuned"], horizontal=True, key="lens_kind")
    target = right.text_input(
        "Target token to follow (optional, one token, mind the leading space)", key="lens_target", placeholder=" Paris",
    )
    target = app_shell.check_text("lens target", target) or None
    if kind == "logit":
        how = "Each layer's residual stream decoded with the model's final norm and unembedding."
        with st.spinner("Decoding every layer…"):
            lens = app_shell.cached(interp.logit_lens, ctx.key, ctx.prompt, target=target)
    else:
        how = "Each layer's residual stream first translated by a learned affine map (tuned lens), then decoded."
        tuned = app_shell.cached(interp.TunedLens.load_for, ctx.key)
        with app_shell.holding(ctx):
            lens = tuned.apply(ctx.model, ctx.prompt, target=target)
    labels = app_shell.token_labels(lens.str_tokens[0])
    names = row_labels(lens)
    n = len(labels)

    if target is not None:
        chosen = st.multiselect(
            "Follow the target after position(s)", labels, default=[labels[-1]], key="lens_target_pos",
            help="The target's probability as the token that comes next after each chosen position; the last "
            "position predicts the prompt's continuation.",
        )
        columns = [labels.index(c) for c in chosen] or [n - 1]
        st.plotly_chart(lens.target_figure(columns=columns), key="lens_target_fig")
        shown = repr(lens.tokenizer.decode([int(lens.target[0])]))
        first = lens.first_top1_layer(pos=columns[0])[0]
        where = (f"it becomes the top prediction at {names[first]} and stays there" if first is not None
                 else "it is not the model's top prediction there")
        st.caption(f"Probability (log scale) and rank of {shown} as the next token after {labels[columns[0]]}, "
                   f"decoded at every layer; the last layer is the model's own output, and {where}.")
    else:
        st.info("Enter a target token above (e.g. \" Paris\") to plot its probability and rank at every layer.")

    if n > WINDOW:
        start = st.slider("First position shown in the map", 0, n - WINDOW, n - WINDOW, key="lens_window",
                          help=f"The map shows {WINDOW} of the prompt's {n} positions at a time.")
        window = list(range(start, start + WINDOW))
    else:
        window = None
    st.plotly_chart(lens.heatmap_figure(columns=window), key="lens_fig")
    st.caption(f"{how} Rows: 'embed' decodes the token embeddings (the input of block 0), 'block l' the residual "
               "stream after block l; the last row is the model's own prediction. The 'embed' row often just "
               "echoes the input token: many models reuse the embedding matrix to unembed. "
               + ("Bold: the target is the top prediction. " if target is not None else "")
               + "Hover a cell for the probabilities.")

    frame = lens.to_frame()
    frame["layer"] = frame["layer"].map(dict(zip(lens.layer_names, names, strict=True)))
    if target is not None:
        frame["target_rank"] += 1  # 1 = top prediction, as in the figure
        last = frame[frame.position == frame.position.max()]
        st.subheader(f"Target {target!r} at the last position")
        st.dataframe(last[["layer", "target_prob", "target_rank", "top_token", "top_prob"]], hide_index=True,
                     column_config={"target_rank": st.column_config.NumberColumn("target rank (1 = top)"),
                                    "target_prob": st.column_config.NumberColumn("target probability", format="%.3g"),
                                    "top_prob": st.column_config.NumberColumn(format="%.3f")})
    with st.expander("Full table (layer × position)"):
        st.dataframe(frame, hide_index=True)


app_shell.run_page(render)
