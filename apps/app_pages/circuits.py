"""Circuits: activation-patching heat maps, the edge circuit found by attribution patching, its faithfulness."""

import app_shell
import streamlit as st

from interp.circuits import TASKS, circuit_faithfulness, find_circuit, task_patching

OWN = "your prompts"
DEFAULT_CLEAN = "When Sam and Tom went to the park, Tom gave a letter to"
DEFAULT_CORRUPTED = "When Tom and Sam went to the park, Sam gave a letter to"


def render() -> None:
    """Draw the circuits page: patching heat maps, the attribution-patching edge circuit, its faithfulness."""
    st.title("Circuits")
    ctx = app_shell.context(need_prompt=False)
    st.caption(
        "Clean prompts against corrupted ones aligned token by token. Activation patching restores one clean "
        "activation in the corrupted run; the circuit scores every edge of the graph (input, heads' q/k/v inputs, "
        "MLPs, logits) by EAP-IG or EAP, and keeps the strongest. Faithfulness: the metric when only the top "
        "edges stay clean and every other edge reads the sender's corrupted-run output."
    )
    cols = st.columns(3)
    source = cols[0].selectbox("Task", [*TASKS, OWN], index=list(TASKS).index("ioi"), key="circ_task")
    method = cols[1].selectbox("Method", ["eap-ig", "eap"], key="circ_method")
    n_prompts = cols[2].slider("Prompts", 2, 32, 8, key="circ_n")
    if source == OWN:
        clean = st.text_input("Clean prompt", DEFAULT_CLEAN, key="circ_clean")
        corrupted = st.text_input("Corrupted prompt (same number of tokens)", DEFAULT_CORRUPTED, key="circ_corr")
        task = (clean, corrupted)
    else:
        task = source

    st.subheader("Activation patching")
    st.caption("KL(clean || patched) at the last token after restoring each clean activation in the corrupted run "
               "(lower: the patch brings back more of the clean prediction), on the task's first 4 prompt pairs.")
    try:
        with st.spinner("Patching…"):
            resid = app_shell.cached(task_patching, ctx.key, task, "resid_pre")
            heads = app_shell.cached(task_patching, ctx.key, task, "z", positions="all")
    except ValueError as err:
        st.error(str(err))
        return
    left, right = st.columns(2)
    left.plotly_chart(resid.figure(), key="circ_resid")
    right.plotly_chart(heads.figure(), key="circ_heads")

    st.subheader("Circuit")
    with st.spinner(f"Scoring every edge ({method})…"):
        circuit = app_shell.cached(find_circuit, ctx.key, task, method, n_prompts=n_prompts, progress=False)
    n_edges = st.slider("Edges shown", 1, min(200, circuit.n_edges), min(30, circuit.n_edges), key="circ_edges")
    st.plotly_chart(circuit.prune(n_edges=n_edges).figure(max_edges=n_edges), key="circ_graph")
    with st.expander("All scored edges"):
        st.dataframe(circuit.to_frame(), hide_index=True)

    st.subheader("Faithfulness")
    with st.spinner("Running the circuit alone at several sizes…"):
        curve = app_shell.cached(circuit_faithfulness, ctx.key, task, method, n_prompts=n_prompts)
    st.plotly_chart(curve.figure(), key="circ_faith_curve")
    st.dataframe(curve.to_frame(), hide_index=True)


app_shell.run_page(render)
