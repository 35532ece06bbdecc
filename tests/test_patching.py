"""Activation and path patching: a planted induction circuit found where it was wired, numbers against patched
runs done by hand on the Hugging Face model (its own modules, not the interp hooks), identities, bad input."""

from __future__ import annotations

import planted_heads
import pytest
import torch
from transformers import GPT2LMHeadModel

import interp
from interp.patching import activation_patching, path_patching

N = 10
"""Length of the repeated random sequence of the planted prompts."""


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted 2-layer model (heads at indices drawn here), its HF twin, and two prompt pairs.

    Clean: ``[BOS] x1..xN x1..x(N-1)``: the induction head at the last position finds ``x(N-1)`` at position N-1, and
    the previous-token head has written it into position N (holding xN), so the model predicts xN. Corrupted: the
    token at position N-1 replaced, so no position has ``x(N-1)`` as its previous token and nothing is copied.
    """
    gen = torch.Generator().manual_seed(20261202)
    prev_head, induction_head = (int(i) for i in torch.randint(planted_heads.N_HEADS, (2,), generator=gen))
    folder = planted_heads.build(tmp_path_factory.mktemp("planted-patching"), prev_head, induction_head)
    clean, corrupted, answer, wrong = [], [], [], []
    for _ in range(2):
        perm = torch.randperm(planted_heads.VOCAB - 1, generator=gen)[: N + 1] + 1
        x, y = perm[:N], perm[N]
        row = torch.cat([torch.tensor([0]), x, x[:-1]])
        bad = row.clone()
        bad[N - 1] = y
        clean.append(row), corrupted.append(bad), answer.append(int(x[-1])), wrong.append(int(y))
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    return (interp.load(folder, device="cpu"), hf, prev_head, induction_head, torch.stack(clean),
            torch.stack(corrupted), answer, wrong)


def _logit_diff(logits, answer, wrong):
    rows = torch.arange(len(answer))
    last = logits[:, -1]
    return float((last[rows, answer] - last[rows, wrong]).mean())


def _hf_run(hf, tokens, z_patch=None, qkv_keep=None, qkv_patch=None):
    """A forward of the HF model with ``z`` (the input of each layer's ``c_proj``) replaced by ``z_patch[layer]``
    (a function of z), the fused ``c_attn`` output of layer 1 kept in ``qkv_keep`` or changed by ``qkv_patch``."""
    handles = []
    for layer, fn in (z_patch or {}).items():
        handles.append(hf.transformer.h[layer].attn.c_proj.register_forward_pre_hook(
            lambda module, args, fn=fn: (fn(args[0].clone()),)))
    if qkv_keep is not None:
        handles.append(hf.transformer.h[1].attn.c_attn.register_forward_hook(
            lambda module, args, out: qkv_keep.append(out.detach().clone())))
    if qkv_patch is not None:
        handles.append(hf.transformer.h[1].attn.c_attn.register_forward_hook(
            lambda module, args, out: qkv_patch(out.clone())))
    try:
        with torch.no_grad():
            return hf(tokens).logits
    finally:
        for handle in handles:
            handle.remove()


def _head(h):
    d = planted_heads.D_HEAD
    return slice(h * d, (h + 1) * d)


def test_activation_patching_finds_the_planted_heads_at_their_positions(planted):
    model, hf, prev_head, induction_head, clean, corrupted, answer, wrong = planted
    result = activation_patching(model, clean, corrupted, site="z", answer=answer, wrong=wrong, progress=False)
    last = clean.shape[1] - 1
    normalised = result.normalised
    # The induction head at the last position and the previous-token head at position N (where it writes the
    # token the induction head's key reads) restore everything; no other head at any position does anything.
    assert normalised[1, last, induction_head] == pytest.approx(1.0, abs=1e-4)
    assert normalised[0, N, prev_head] == pytest.approx(1.0, abs=1e-4)
    rest = torch.ones_like(normalised, dtype=torch.bool)
    rest[1, last, induction_head] = rest[0, N, prev_head] = False
    assert normalised[rest].abs().max() < 1e-3

    # Numbers against the HF model patched by hand (clean z copied into c_proj's input of the corrupted run).
    clean_z = {}
    _hf_run(hf, clean, z_patch={layer: (lambda z, layer=layer: clean_z.setdefault(layer, z)) for layer in (0, 1)})
    assert result.clean_metric == pytest.approx(_logit_diff(hf(clean).logits.detach(), answer, wrong), abs=1e-4)
    assert result.corrupted_metric == pytest.approx(_logit_diff(hf(corrupted).logits.detach(), answer, wrong),
                                                    abs=1e-4)
    for layer, pos, head in [(0, N, prev_head), (1, last, induction_head), (0, N - 1, prev_head), (1, 3, 0)]:
        def patch(z, layer=layer, pos=pos, head=head):
            z[:, pos, _head(head)] = clean_z[layer][:, pos, _head(head)]
            return z
        by_hand = _logit_diff(_hf_run(hf, corrupted, z_patch={layer: patch}), answer, wrong)
        assert float(result.patched[layer, pos, head]) == pytest.approx(by_hand, abs=1e-4)


def test_path_patching_finds_k_composition_and_the_induction_head_on_the_logits(planted):
    model, hf, prev_head, induction_head, clean, corrupted, answer, wrong = planted
    receivers = [f"a1.h{h}<{kind}>" for h in range(planted_heads.N_HEADS) for kind in "qkv"] + ["logits"]
    result = path_patching(model, clean, corrupted, receivers, answer=answer, wrong=wrong, progress=False)
    frame = result.to_frame()
    frame["size"] = frame["effect"].abs()
    heads = frame[frame.sender.str.startswith("a")]
    k_paths = heads[heads.receiver.str.endswith("<k>")].sort_values("size", ascending=False)
    assert (k_paths.iloc[0].sender, k_paths.iloc[0].receiver) == (f"a0.h{prev_head}", f"a1.h{induction_head}<k>")
    assert k_paths.iloc[0]["size"] > 100 * k_paths.iloc[1]["size"]
    to_logits = heads[heads.receiver == "logits"].sort_values("size", ascending=False)
    assert to_logits.iloc[0].sender == f"a1.h{induction_head}"
    assert result.ranked("logits")[0] == (f"a1.h{induction_head}", pytest.approx(1.0, abs=1e-4))
    assert torch.isnan(result.patched[result.senders.index("a1.h0"), receivers.index("a1.h0<k>")])  # no path

    # Wang et al.'s three runs by hand on the HF model: (2) clean with the sender's z corrupted and every other
    # head frozen to its clean z, keeping the receiver's keys; (3) clean with only those keys patched in.
    zs = {"clean": {}, "corrupted": {}}
    for name, tokens in (("clean", clean), ("corrupted", corrupted)):
        _hf_run(hf, tokens, z_patch={layer: (lambda z, layer=layer, name=name: zs[name].setdefault(layer, z))
                                     for layer in (0, 1)})

    def frozen(layer):
        def fn(z):
            z = zs["clean"][layer].clone()
            if layer == 0:
                z[:, :, _head(prev_head)] = zs["corrupted"][0][:, :, _head(prev_head)]
            return z
        return fn

    kept = []
    _hf_run(hf, clean, z_patch={0: frozen(0), 1: frozen(1)}, qkv_keep=kept)
    k = planted_heads.D_MODEL + induction_head * planted_heads.D_HEAD  # key columns of the fused c_attn output

    def patch_keys(out):
        out[:, :, k:k + planted_heads.D_HEAD] = kept[0][:, :, k:k + planted_heads.D_HEAD]
        return out

    by_hand = _logit_diff(_hf_run(hf, clean, qkv_patch=patch_keys), answer, wrong)
    row, col = result.senders.index(f"a0.h{prev_head}"), receivers.index(f"a1.h{induction_head}<k>")
    assert float(result.patched[row, col]) == pytest.approx(by_hand, abs=1e-4)
    assert by_hand < result.clean_metric - 1.0  # the path carries a real share of the behaviour


def _pair(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, 250, (2, 8), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 4] = torch.randint(3, 250, (2,), generator=gen)
    return clean, corrupted, dict(answer=[5, 6], wrong=[7, 8], progress=False)


def test_identities(tiny_model):
    clean, corrupted, kw = _pair(tiny_model)
    # Every position of the layer-0 residual stream restored: the clean run, exactly.
    whole = activation_patching(tiny_model, clean, corrupted, "resid_pre", layers=[0], positions="all", **kw)
    assert float(whole.patched[0, 0, 0]) == pytest.approx(whole.clean_metric, abs=1e-5)
    assert float(whole.normalised[0, 0, 0]) == pytest.approx(1.0, abs=1e-4)
    assert whole.clean_metric != pytest.approx(whole.corrupted_metric, abs=1e-4)
    # Positions before the first corrupted token hold the same activations in both runs: patching them is nothing.
    for site in ("resid_mid", "z", "k", "neurons"):
        early = activation_patching(tiny_model, clean, corrupted, site, positions=[0, 1, 2, 3], units=[0, 1], **kw)
        torch.testing.assert_close(early.patched, torch.full_like(early.patched, early.corrupted_metric),
                                   atol=1e-5, rtol=0)
    # One patch per forward or many: the same numbers.
    one = activation_patching(tiny_model, clean, corrupted, "pattern", batch_size=1, **kw)
    many = activation_patching(tiny_model, clean, corrupted, "pattern", **kw)
    torch.testing.assert_close(one.patched, many.patched, atol=1e-5, rtol=0)
    # A last-layer head has no downstream head to freeze: its path to the logits is its output noised.
    info = interp.model_info(tiny_model)
    last = info.n_layers - 1
    paths = path_patching(tiny_model, clean, corrupted, "logits", [f"a{last}.h{h}" for h in range(info.n_heads)], **kw)
    noised = activation_patching(tiny_model, corrupted, clean, "z", layers=[last], positions="all", **kw)
    torch.testing.assert_close(paths.patched[:, 0], noised.patched[0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(path_patching(tiny_model, clean, corrupted, "logits", batch_size=2, **kw).patched,
                               path_patching(tiny_model, clean, corrupted, "logits", **kw).patched, atol=1e-5, rtol=0)


def test_metrics(tiny_gpt2):
    clean, corrupted, kw = _pair(tiny_gpt2)
    kw.pop("wrong")
    kl = activation_patching(tiny_gpt2, clean, corrupted, metric="kl", layers=[0], positions="all", progress=False)
    assert kl.clean_metric == pytest.approx(0.0, abs=1e-6) and kl.corrupted_metric > 0
    assert float(kl.patched[0, 0, 0]) == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        probs = tiny_gpt2(clean)[:, -1].softmax(-1)
    prob = activation_patching(tiny_gpt2, clean, corrupted, metric="prob", layers=[0], **kw)
    assert prob.clean_metric == pytest.approx(float(probs[[0, 1], [5, 6]].mean()), abs=1e-6)
    rows = torch.arange(2)
    custom = activation_patching(tiny_gpt2, clean, corrupted, metric=lambda logits, last: logits[rows, last, 5]
                                 - logits[rows, last, 7], layers=[0], progress=False)
    direct = activation_patching(tiny_gpt2, clean, corrupted, layers=[0], answer=5, wrong=7, progress=False)
    torch.testing.assert_close(custom.patched, direct.patched, atol=1e-5, rtol=0)
    assert custom.metric == "custom"


def test_grouped_query_receivers_and_units(tiny_llama):
    clean, corrupted, kw = _pair(tiny_llama)
    result = path_patching(tiny_llama, clean, corrupted, ["a1.h3<k>", "a1.kv1<v>", "a1.h3<q>"], **kw)
    assert result.receivers == ["a1.kv1<k>", "a1.kv1<v>", "a1.h3<q>"]  # 4 query heads share 2 key/value heads
    assert result.to_frame().notna().all().all()
    keys = activation_patching(tiny_llama, clean, corrupted, "k", positions="all", **kw)
    assert keys.unit_kind == "kv_head" and keys.units == [0, 1]


def test_results_tables_and_figures(tiny_gpt2):
    clean, corrupted, kw = _pair(tiny_gpt2)
    result = activation_patching(tiny_gpt2, clean, corrupted, "z", **kw)
    frame = result.to_frame()
    assert list(frame.columns) == ["layer", "position", "token", "head", "patched", "effect", "normalised"]
    assert len(frame) == 2 * 8 * 4
    name = interp.model_info(tiny_gpt2).display_name
    for fig in (result.figure(), activation_patching(tiny_gpt2, clean, corrupted, **kw).figure(),
                activation_patching(tiny_gpt2, clean, corrupted, "z", positions="all", **kw).figure(),
                path_patching(tiny_gpt2, clean, corrupted, **kw).figure(),
                path_patching(tiny_gpt2, clean, corrupted, ["logits", "a1.h0<q>"], **kw).figure()):
        assert fig.layout.title.text.startswith(name)
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
        assert fig.data[0].colorbar.title.text


@pytest.mark.parametrize("kwargs, match", [
    ({"site": "resid"}, "site='resid'"),
    ({"layers": [2]}, "layer=2, model has layers 0..1"),
    ({"positions": [8]}, "position 8"),
    ({"site": "z", "units": [4]}, "heads 0..3"),
    ({"metric": "loss"}, "metric='loss'"),
    ({"answer": None}, "answer=None"),
    ({"answer": [1, 2, 3]}, "3 tokens for 2 prompts"),
    ({"batch_size": 0}, "batch_size=0"),
])
def test_activation_patching_bad_input(tiny_gpt2, kwargs, match):
    clean, corrupted, kw = _pair(tiny_gpt2)
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        activation_patching(tiny_gpt2, clean, corrupted, **{**kw, **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    ({"receivers": "a1.h0"}, "receiver='a1.h0'"),
    ({"receivers": "a1.kv0<q>"}, "queries belong"),
    ({"receivers": "a3.h0<q>"}, "layer=3"),
    ({"senders": ["a0.h9"]}, "head=9"),
    ({"senders": ["mlp0"]}, "sender='mlp0'"),
])
def test_path_patching_bad_input(tiny_gpt2, kwargs, match):
    clean, corrupted, kw = _pair(tiny_gpt2)
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(".", r"\.")):
        path_patching(tiny_gpt2, clean, corrupted, **{**kw, **kwargs})


def test_prompts_must_line_up(tiny_gpt2):
    clean, corrupted, kw = _pair(tiny_gpt2)
    with pytest.raises(ValueError, match="clean has 2 prompts and corrupted 1"):
        activation_patching(tiny_gpt2, clean, corrupted[:1], **kw)
    with pytest.raises(ValueError, match="prompt 0: clean is 8 tokens and corrupted 7"):
        path_patching(tiny_gpt2, clean, corrupted[:, :7], **kw)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
def test_card_circuits_section_names_the_census_previous_token_head(name):
    """The card's K-composition edge starts at the head the census calls previous-token (attention alone)."""
    from interp.cards.wiring import circuits_section

    model = interp.load(name)
    body, numbers = circuits_section(model, n_prompts=8)
    census = interp.head_census(model)
    prev = torch.nan_to_num(census.score("previous_token"), nan=-1.0)
    layer, head = divmod(int(prev.argmax()), prev.shape[1])
    assert numbers["induction"]["previous_token_head"] == f"a{layer}.h{head}"
    assert f"L{layer}H{head} →" in body and "K-composition" in body
    assert numbers["ioi"]["clean"] > numbers["ioi"]["corrupted"]
