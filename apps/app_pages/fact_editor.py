"""Fact editor: causal trace, a ROME edit on a per-session copy of the model, before/after, undo.

The shared model (``st.cache_resource``) is never edited: the edit goes into a copy held in this
session's ``st.session_state``, so other sessions and every cached result keep the original weights.
"""

import copy
import math

import app_shell
import streamlit as st

import interp
from interp import rome
from interp.rome.counterfact import score_targets

# Session-state key of this session's edit: the edited copy, the Edit, and the request. (A comment,
# not a docstring: Streamlit's "magic" would print a bare string literal on the page.)
STATE = "fact_edit"


def _edited_copy(ctx: app_shell.Context):
    # deepcopy keeps the shared bridge untouched; a model that will not copy is loaded afresh instead.
    try:
        return copy.deepcopy(ctx.model)
    except Exception:  # noqa: BLE001 - any copy failure just means "load a private one"
        return interp.load(ctx.key.name, device=ctx.key.device, dtype=ctx.key.dtype)


def _probabilities(model, pairs: list[tuple[str, str]]) -> list[float]:
    # score_targets gives the mean token NLL; exp(-NLL) is the (per-token geometric mean) probability.
    return [math.exp(-nll) for nll, _ in score_targets(model, pairs)]


def _table(pairs, before, after):
    import pandas as pd

    data = {"prompt": [p for p, _ in pairs], "target": [t for _, t in pairs], "p before": before}
    if after is not None:
        data["p after"] = after
    return pd.DataFrame(data)


def render() -> None:
    st.title("Fact editor")
    ctx = app_shell.context(need_prompt=False)
    st.caption(
        "Trace where the model stores a fact about a subject, then rewrite it with ROME (a rank-one change to one "
        "MLP's output weights). The edit applies to your session's own copy of the model."
    )
    cols = st.columns([3, 2, 1])
    prompt = cols[0].text_input("Prompt", key="fe_prompt", value=ctx.prompt)
    subject = cols[1].text_input("Subject (must appear in the prompt)", key="fe_subject", value="The Eiffel Tower")
    target = cols[2].text_input("New target", key="fe_target", value=" Rome")
    extra = st.text_area(
        "Paraphrases and neighbours to check (one prompt per line; `prompt | target` to give a target, "
        "otherwise the new target is scored)",
        key="fe_extra",
        value="The Eiffel Tower is in the city of\nThe Louvre is located in the city of | Paris",
    )
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

    pairs = [(prompt, target)]
    for line in extra.splitlines():
        if line.strip():
            text, _, own = line.partition("|")
            pairs.append((text.strip(), own if own.strip() else target))
    request = (ctx.key, prompt, subject, target)
    session = st.session_state.get(STATE)
    if session is not None and session["request"][0] != ctx.key:
        st.session_state.pop(STATE)  # the sidebar switched models: an edit of another model no longer applies
        session = None

    buttons = st.columns(2)
    if buttons[0].button("Apply ROME edit", key="fe_apply", type="primary", disabled=session is not None):
        template = prompt.replace(subject, "{}", 1)
        with st.spinner("Computing the rank-one edit…"):
            model = _edited_copy(ctx)
            change = rome.edit(model, prompt=template, subject=subject, target=target)
        session = st.session_state[STATE] = {"model": model, "edit": change, "request": request}
    if buttons[1].button("Undo", key="fe_undo", disabled=session is None):
        session["edit"].undo()
        st.session_state.pop(STATE)
        session = None

    before = _probabilities(ctx.model, pairs)
    after = _probabilities(session["model"], pairs) if session is not None else None
    if session is not None:
        done = session["request"]
        st.success(f"Edited layer {session['edit'].layer}: {done[2]!r} → {done[3]!r} (this session only)")
    st.subheader("Probabilities before / after")
    st.dataframe(_table(pairs, before, after), hide_index=True)

    st.subheader("Generation")
    gen_cols = st.columns(2)
    greedy = dict(max_new_tokens=12, temperature=0.0, seed=0)
    gen_cols[0].markdown(f"**Before:** {prompt}{interp.generate(ctx.model, prompt, **greedy).text}")
    if session is not None:
        gen_cols[1].markdown(f"**After:** {prompt}{interp.generate(session['model'], prompt, **greedy).text}")


app_shell.run_page(render)
