"""CLI group ``interp features``: SAEs (train, quality), a unit's top examples, steering and concept recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interp.cli.common import (
    DEFAULT_PROMPT,
    DeviceOption,
    JsonOption,
    ModelOption,
    emit,
    fail,
    load_or_exit,
    refuse_existing,
    user_errors,
)

SiteOption = Annotated[str | None, typer.Option(
    "--site", help="Hook name, e.g. blocks.3.hook_resid_post (default: the site of the shipped SAE).")]


def _sae(bridge, site):
    from interp.features import load_sae

    with user_errors(ValueError, FileNotFoundError):
        return load_sae(bridge, site)


def top(
    model: ModelOption = "ref-gpt2",
    site: SiteOption = None,
    feature: Annotated[int | None, typer.Option(help="SAE feature to rank by.")] = None,
    neuron: Annotated[int | None, typer.Option(help="Neuron (unit index of --site) to rank by instead.")] = None,
    k: Annotated[int, typer.Option(help="Examples shown.")] = 10,
    n_tokens: Annotated[int, typer.Option(help="Tokens of reference-world text scanned.")] = 20_000,
    store: Annotated[Path | None, typer.Option(
        help="An activation store to read (default: build one of reference-world text).")] = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Max-activating examples of an SAE feature or a neuron, with the histogram summary and the logit effect."""
    import tempfile

    from interp import store as stores
    from interp.features import feature_examples

    if (feature is None) == (neuron is None):
        raise fail(ValueError("pass exactly one of --feature N or --neuron N"))
    bridge = load_or_exit(model, device)
    sae = _sae(bridge, site) if feature is not None or site is None else None
    where = site or sae.site
    with user_errors(ValueError, FileNotFoundError):
        if store is not None:
            opened = stores.open(store)
        else:
            opened = stores.build(bridge, None, sites=[where], n_tokens=n_tokens,
                                  out=Path(tempfile.mkdtemp(prefix="interp-features-")) / "store", progress=False)
        if feature is not None:
            result = feature_examples(opened, sae, feature, k)
        else:
            result = opened.top_examples(where, neuron, k)
    frame = result.to_frame()
    logits = result.logits.to_frame().to_dict("records") if result.logits is not None else None
    examples = frame[["activation", "token", "context"]].to_dict("records")
    data = {"site": where, "unit": result.unit, "examples": examples, "logit_effect": logits}
    text = "\n".join([f"{where}, {result.unit}"] + [f"{r['activation']:9.3f}  {r['context']!r}" for r in examples])
    emit(data, text, as_json)


def steer(
    model: ModelOption = "ref-gpt2",
    feature: Annotated[int, typer.Option(help="SAE feature whose decoder row is added.")] = 0,
    alpha: Annotated[float, typer.Option(help="Length of the added vector.")] = 8.0,
    prompt: Annotated[str, typer.Option(
        "--prompt", "-p", help="Prompt.")] = DEFAULT_PROMPT,
    site: SiteOption = None,
    k: Annotated[int, typer.Option(help="Most-changed tokens listed.")] = 10,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Next-token probabilities with and without an SAE feature added to the residual stream."""
    from interp.features import steer_with_feature

    bridge = load_or_exit(model, device)
    with user_errors():
        effect = steer_with_feature(bridge, _sae(bridge, site), feature, alpha, prompt, k)
    frame = effect.to_frame()
    emit({"feature": feature, "alpha": alpha, "prompt": prompt, "tokens": frame.to_dict("records")},
         frame.to_string(index=False), as_json)


def quality(
    model: ModelOption = "ref-gpt2",
    site: SiteOption = None,
    n_seqs: Annotated[int, typer.Option(help="Held-out sequences.")] = 64,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Variance explained, L0, dead features and the loss increase of the shipped SAE spliced in."""
    from interp.features import sae_quality

    bridge = load_or_exit(model, device)
    with user_errors():
        result = sae_quality(bridge, _sae(bridge, site), n_seqs=n_seqs)
    emit(result.to_json(), str(result), as_json)


def concepts(
    model: ModelOption = "ref-gpt2",
    site: SiteOption = None,
    n_rows: Annotated[int, typer.Option(help="Rows of labelled text per split.")] = 400,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Concept recovery: held-out F1 of the best SAE feature, MLP neuron and random direction per planted concept."""
    from interp.features import concept_recovery

    bridge = load_or_exit(model, device)
    with user_errors():
        result = concept_recovery(bridge, _sae(bridge, site), n_rows=n_rows)
    frame = result.to_frame()[["concept", "sae_unit", "sae_heldout_f1", "neuron_heldout_f1", "random_heldout_f1"]]
    emit(result.to_json(), f"{result}\n{frame.to_string(index=False, float_format='%.2f')}", as_json)


def train(
    model: ModelOption = "ref-gpt2",
    layer: Annotated[int, typer.Option(help="Block whose resid_post is encoded.")] = 3,
    num_latents: Annotated[int, typer.Option(help="SAE features.")] = 1024,
    k: Annotated[int, typer.Option(help="Active features per token (TopK).")] = 16,
    n_tokens: Annotated[int, typer.Option(help="Training activations.")] = 100_000,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 500,
    out: Annotated[Path | None, typer.Option(help="Folder to save to (default: <checkpoint>/sae).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing SAE.")] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train a TopK SAE (sparsify) on one block's resid_post, measure it and save it beside the checkpoint."""
    from interp.core import check_layer, model_info
    from interp.core.hooks import hook_name
    from interp.features import sae_folder, sae_quality, site_activations, train_sae

    bridge = load_or_exit(model, device)
    with user_errors():
        check_layer(model_info(bridge), layer)
    site = hook_name("resid_post", layer)
    folder = out if out is not None else sae_folder(bridge)
    refuse_existing(folder / f"{site}.safetensors", overwrite)
    with user_errors():
        acts = site_activations(bridge, site, n_tokens, progress=True)
        sae, _ = train_sae(acts, site, num_latents=num_latents, k=k, steps=steps)
    result = sae_quality(bridge, sae)
    sae.meta["quality"] = result.to_json()
    path = sae.save(folder, overwrite=overwrite)
    emit({"path": str(path), **result.to_json()}, f"{result}\nsaved {path}", as_json)


def register(app: typer.Typer) -> None:
    """Add the ``features`` group to ``app``."""
    group = typer.Typer(help="SAE features and neurons over reference-world text: examples, steering, concepts.",
                        no_args_is_help=True)
    for command in (top, steer, quality, concepts, train):
        group.command()(command)
    app.add_typer(group, name="features")
