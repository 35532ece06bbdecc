"""Features: a neuron, an SAE feature or a probe direction over reference-world text, and steering with it."""

import app_shell
import streamlit as st
import torch

import probes
from interp import features
from interp.core.hooks import hook_name, site_of


def _unit(ctx, site, sae):
    """The chosen unit: (label, store unit, steering (site, direction) or None), drawn from the widgets."""
    neurons = site_of(site) == "neurons"
    kinds = (["SAE feature"] if sae is not None else []) + ["neuron"] + ([] if neurons else ["probe direction"])
    kind = st.radio("Unit", kinds, horizontal=True, key="features_kind")
    if kind == "SAE feature":
        by_concept = st.checkbox("Find the feature for a planted concept (runs concept recovery)",
                                 key="features_by_concept")
        if by_concept:
            concept = st.selectbox("Concept", features.concept_names(), key="features_concept")
            with st.spinner("Scoring every feature against the planted concepts…"):
                recovery = app_shell.cached(features.concept_recovery, ctx.key)
            feature = recovery.feature_for(concept)
            row = recovery.to_frame().set_index("concept").loc[concept]
            st.caption(f"Feature {feature}: held-out F1 {row['sae_heldout_f1']:.2f} (best neuron "
                       f"{row['neuron_heldout_f1']:.2f}, best random direction {row['random_heldout_f1']:.2f}).")
        else:
            feature = int(st.number_input("Feature", 0, sae.num_latents - 1, 0, key="features_feature"))
        return f"SAE feature {feature}", ("sae", feature), (site, sae.decoder_direction(feature))
    width = ctx.info.d_mlp if neurons else ctx.info.d_model
    if kind == "neuron":
        neuron = int(st.number_input("Neuron", 0, width - 1, 0, key="features_neuron"))
        return f"neuron {neuron}", neuron, features.steering_direction(ctx.model, site, neuron)
    task = st.selectbox("Probe task", probes.TASKS, key="features_probe_task")
    with st.spinner(f"Fitting probes for {task}…"):
        report = app_shell.cached(probes.fit, ctx.key, task, site="resid_post")
    layer = int(site.split(".")[1])
    probe = report.probe(layer)
    label = st.selectbox("Class", probe.labels, key="features_probe_label")
    direction = probe.direction(label)
    return f"probe {task}={label}", direction.numpy(), (hook_name("resid_post", layer), direction)


def render() -> None:
    """Draw the features page: a unit's top activations on reference-world text, and steering with it."""
    st.title("Features")
    ctx = app_shell.context(need_prompt=False)
    shipped = features.shipped_sites(ctx.model)
    layers = range(ctx.info.n_layers)
    sites = list(dict.fromkeys(shipped + [hook_name("resid_post", L) for L in layers]
                               + [hook_name("neurons", L) for L in layers]))
    site = st.selectbox("Site", sites, key="features_site",
                        help="Sites with a shipped SAE come first, then each block's residual stream and MLP neurons.")
    sae = features.load_sae(ctx.model, site) if site in shipped else None
    if sae is None:
        st.caption("No SAE shipped for this site: browse neurons or a probe direction.")
    label, unit, steering = _unit(ctx, site, sae)
    k = st.slider("Examples", 5, 40, 15, key="features_k")
    with st.spinner("Storing activations of reference-world text…"):
        store = app_shell.cached(features.world_store, ctx.key, (site,))
    if isinstance(unit, tuple):
        examples = features.feature_examples(store, sae, unit[1], k)
    else:
        examples = store.top_examples(site, unit, k)
    st.subheader(f"{label}: top examples over {store.n_tokens} stored tokens")
    st.plotly_chart(examples.figure(), key="features_examples_fig")
    st.dataframe(examples.to_frame()[["activation", "token", "context"]], hide_index=True)

    st.subheader("Steer the prompt")
    alpha = st.slider("alpha (length of the added vector)", -30.0, 30.0, 8.0, 0.5, key="features_alpha")
    text = app_shell.prompt()
    if not text.strip():
        st.info("Type a prompt in the sidebar to steer it.")
        return
    where, direction = steering
    with app_shell.holding(ctx):
        effect = features.steer_with_direction(ctx.model, where, torch.as_tensor(direction), alpha, text, 10, label)
    st.caption(f"{label}: alpha x its unit direction added at {where}, every position.")
    st.plotly_chart(effect.figure(), key="features_steer_fig")
    st.dataframe(effect.to_frame(), hide_index=True)


app_shell.run_page(render)
