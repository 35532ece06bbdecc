"""Fact editor: causal trace, a ROME edit that only this session sees, before/after, undo.

There is one copy of the model for every session, and it stays unedited. A session keeps only its
``interp.rome.Edit`` (a few vectors; ROME is rank-one) and applies it around its own computations,
under the model's lock, undoing it bit for bit before the lock is released (``app_shell.cached`` with
``edit=``). Memory does not grow with the number of sessions that edit.
"""

import math

import app_shell
import streamlit as st

import interp
from interp import rome
from interp.rome.counterfact import score_targets

# Session-state key of this session's edit: the unapplied Edit and the request. (A comment, not a
# docstring: Streamlit's "magic" would print a bare string literal on the page.)
STATE = "fact_edit"


def _probabilities(scores) -> list[float]:
    # score_targets gives the mean token NLL; exp(-NLL) is the (per-token geometric mean) probability.
    return [math.exp(-nll) for nll, _ in scores]


def _pairs(prompt: str, target: str, extra: str) -> list[tuple[str, str]]:
    lines = [line for line in extra.splitlines() if line.strip()]
    if len(lines) > app_shell.MAX_PARAPHRASES:
        raise ValueError(
            f"the paraphrase box has {len(lines)} lines; the cap is {app_shell.MAX_PARAPHRASES} lines"
        )
    pairs = [(prompt, target)]
    for line in lines:
        app_shell.check_text("paraphrase", line)
        text, _, own = line.partition("|")
        pairs.append((text.strip(), own if own.strip() else target))
    return pairs


def _table(pairs, before, after):
    import pandas as pd

    data = {"prompt": [p for p, _ in pairs], "target": [t for _, t in pairs], "p before": before}
    if after is not None:
        data["p after"] = after
    return pd.DataFrame(data)


def render() -> None:
    """Draw the fact editor: causal trace, a session-only ROME edit, before/after and undo."""
    st.title("Fact editor")
    ctx = app_shell.context(need_prompt=False)
    st.caption(
        "Trace where the model stores a fact about a subject, then rewrite it with ROME (a rank-one change to one "
        "MLP's output weights). Only your session sees the edit: it is applied around your own computations and "
        "undone after each, so other visitors keep the original model."
    )
    cols = st.columns([3, 2, 1])
    caps = app_shell.CAPS
    prompt = cols[0].text_input("Prompt", key="fe_prompt", value=ctx.prompt[: caps["fact prompt"]],
                                help=f"At most {caps['fact prompt']} characters.")
    subject = cols[1].text_input("Subject (must appear in the prompt)", key="fe_subject", value="The Eiffel Tower",
                                 help=f"At most {caps['subject']} characters.")
    target = cols[2].text_input("New target", key="fe_target", value=" Rome",
                                help=f"At most {caps['target']} characters.")
    extra = st.text_area(
        "Paraphrases and neighbours to check (one prompt per line; `prompt | target` to give a target, "
        f"otherwise the new target is scored; at most {app_shell.MAX_PARAPHRASES} lines)",
        key="fe_extra",
        value="The Eiffel Tower is in the city of\nThe Louvre is located in the city of | Paris",
    )
    app_shell.check_text("fact prompt", prompt)
    app_shell.check_text("subject", subject)
    app_shell.check_text("target", target)
    pairs = _pairs(prompt, target, extra)
    if not prompt.strip():
        raise ValueError("the prompt is empty; type the fact's prompt")
    if not subject.strip():
        raise ValueError("the subject is empty; type the subject as it appears in the prompt")
    if subject not in prompt:
        raise ValueError(f"subject {subject!r} does not occur in the prompt {prompt!r}")
    if not target.strip():
        raise ValueError("the new target is empty")

    st.subheader("Causal trace")
    with st.spinner("Tracing (corrupt the subject, restore one state at a time)…"):
        trace = app_shell.cached(interp.causal_trace, ctx.key, prompt, subject)
    st.plotly_chart(trace.figure(), key="fe_trace")

    request = (ctx.key, prompt, subject, target)
    session = st.session_state.get(STATE)
    if session is not None and session["request"][0] != ctx.key:
        st.session_state.pop(STATE)  # the sidebar switched models: an edit of another model no longer applies
        session = None

    buttons = st.columns(2)
    if buttons[0].button("Apply ROME edit", key="fe_apply", type="primary", disabled=session is not None):
        template = prompt.replace(subject, "{}", 1)
        with st.spinner("Computing the rank-one edit…"), app_shell.edited(ctx.model):
            change = rome.edit(ctx.model, prompt=template, subject=subject, target=target)
            change.undo()  # the shared model stays unedited; the session keeps the vectors
        session = st.session_state[STATE] = {"edit": change, "request": request}
    if buttons[1].button("Undo", key="fe_undo", disabled=session is None):
        st.session_state.pop(STATE)  # nothing is in the model's weights: forgetting the edit undoes it
        session = None

    edit = session["edit"] if session is not None else None
    before = _probabilities(app_shell.cached(score_targets, ctx.key, pairs))
    after = _probabilities(app_shell.cached(score_targets, ctx.key, pairs, edit=edit)) if edit is not None else None
    if session is not None:
        done = session["request"]
        st.success(f"Edited layer {edit.layer}: {done[2]!r} → {done[3]!r} (this session only)")
    st.subheader("Probabilities before / after")
    st.dataframe(_table(pairs, before, after), hide_index=True)

    st.subheader("Generation")
    gen_cols = st.columns(2)
    greedy = dict(max_new_tokens=12, temperature=0.0, seed=0)
    gen_cols[0].markdown(f"**Before:** {prompt}{app_shell.cached(interp.generate, ctx.key, prompt, **greedy).text}")
    if edit is not None:
        text = app_shell.cached(interp.generate, ctx.key, prompt, edit=edit, **greedy).text
        gen_cols[1].markdown(f"**After:** {prompt}{text}")


app_shell.run_page(render)
