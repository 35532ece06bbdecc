"""The algebra that makes EAP/EAP-IG cheap, checked against the plain computation it replaces.

The plain computation pulls every head's q/k/v gradient back through the head's weights and the norm's exact
backward pass (:meth:`Norm.vjp`, itself checked against autograd in tests/test_circuits.py) run by run, then
contracts with the senders' differences. The fast one sums head-sized gradients over runs and builds the
``d_model``-sized gradients once (:meth:`Reads.folded`). Models here get random biases and norm weights so the
folded offsets are exercised.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_GPT2, TINY_LLAMA

import interp
from interp.circuits import EdgeGraph, make_task
from interp.circuits.attribution import eap_scores, sender_outputs
from interp.circuits.reads import Reads
from interp.core.hooks import hook_name, hooked
from interp.core.toy_models import load_toy


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    """A fresh tiny model (not the shared fixture) with every parameter perturbed, biases and norms included."""
    model = load_toy(TINY_GPT2 if request.param == "gpt2" else TINY_LLAMA)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model


def plain_receiver_grads(model, reads, task, embedding=None):
    """``[batch pos receiver d_model]``: each receiver's gradient, pulled back head by head through Norm.vjp."""
    n_layers = reads.info.n_layers
    kept = {}

    def keep(key):
        def hook(x, hook):
            if key == "resid_pre0":
                x = (x if embedding is None else embedding).detach().clone().requires_grad_(True)
            elif key.startswith("resid_mid"):
                x = x.clone()
            kept[key] = x
            return x

        return hook

    sites = ("resid_pre", "q", "k", "v", "resid_mid", "resid_post")
    hooks = [(hook_name(site, layer), keep(f"{site}{layer}")) for layer in range(n_layers) for site in sites]
    wanted = [f"{site}{layer}" for layer in range(n_layers) for site in ("q", "k", "v", "resid_mid")]
    wanted.append(f"resid_post{n_layers - 1}")
    with torch.enable_grad(), hooked(model, hooks):
        found = torch.autograd.grad(task.metric(model(task.clean)), [kept[k] for k in wanted])
    grads = dict(zip(wanted, found, strict=True))
    out = []
    for layer in range(n_layers):
        x = kept[f"resid_pre{layer}"].detach()
        out += [reads.input_grad(which, layer, x, grads[f"{which}{layer}"]) for which in "qkv"]
        out.append(grads[f"resid_mid{layer}"][:, :, None])
    out.append(grads[f"resid_post{n_layers - 1}"][:, :, None])
    return torch.cat(out, dim=2)


def plain_scores(model, task, steps):
    reads, graph = Reads.of(model), EdgeGraph.for_model(model)
    clean, corrupted = sender_outputs(model, reads, task.clean)[0], sender_outputs(model, reads, task.corrupted)[0]
    if steps is None:
        grads = plain_receiver_grads(model, reads, task)
    else:
        start, end = corrupted[:, :, 0], clean[:, :, 0]
        grads = sum(plain_receiver_grads(model, reads, task, start + (k / steps) * (end - start))
                    for k in range(steps)) / steps
    return torch.einsum("bpsd,bprd->sr", corrupted - clean, grads) * graph.valid


def test_folded_reads_reproduce_the_heads_activations(model):
    """``fold @ xhat + offset`` is what the q, k and v hooks record."""
    reads = Reads.of(model)
    folds, offsets = reads.folded()
    info = interp.model_info(model)
    if reads.norms[0].bias is not None:  # GPT-2: biases present, so the offsets are checked (Llama has none)
        assert offsets.abs().max() > 1e-2
    cap = interp.capture(model, ["The cat sat on the mat", "A dog"], ["resid_pre", "q", "k", "v"])
    for layer in range(info.n_layers):
        xhat = reads.norms[layer].standardize(cap.resid(layer, "pre"))[0]
        got = torch.einsum("ned,bpd->bpne", folds[layer], xhat) + offsets[layer]
        want = torch.cat([cap.activations[hook_name(w, layer)] for w in "qkv"], dim=2)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [None, 1, 3])
def test_fast_scores_equal_the_plain_computation(model, steps):
    """EAP (``steps=None``) and EAP-IG equal the run-by-run computation to float32 precision."""
    task = make_task(model, "induction", seq_len=5, n_prompts=3, seed=2)
    _assert_same(eap_scores(model, EdgeGraph.for_model(model), task, steps=steps), plain_scores(model, task, steps))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
@pytest.mark.parametrize("task_name", ["induction", "ioi"])
def test_fast_scores_equal_the_plain_computation_on_reference_models(name, task_name):
    model = interp.load(name)
    task = make_task(model, task_name, n_prompts=6, seed=1)
    graph = EdgeGraph.for_model(model)
    for steps in (None, 3):
        _assert_same(eap_scores(model, graph, task, steps=steps), plain_scores(model, task, steps))


def _assert_same(got, want):
    scale = want.abs().max()
    assert scale > 0
    torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=1e-5)
