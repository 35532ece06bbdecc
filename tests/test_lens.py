"""Logit lens and tuned lens: the last-layer identity, HF-independent decoding, bounded memory, bad input, files."""

from __future__ import annotations

import html

import pytest
import torch

import interp
from interp.lens.logit import logit_lens
from interp.lens.tuned import FILENAME, TunedLens

PROMPTS = ["The cat sat on the mat", "Paris is the capital of France and"]


def _hf_decode(model, tokens, mask):
    """Every layer decoded with the Hugging Face modules directly: hidden states -> final norm -> lm_head."""
    hf = model.original_model
    norm = hf.transformer.ln_f if hasattr(hf, "transformer") else hf.model.norm
    with torch.no_grad():
        out = hf(tokens, attention_mask=mask, output_hidden_states=True)
        # HF's last hidden state already went through the final norm; the others are raw residuals.
        layers = [hf.lm_head(norm(h)) for h in out.hidden_states[:-1]] + [out.logits]
    return torch.stack(layers).log_softmax(-1)


def test_last_layer_is_the_models_own_logprobs(tiny_model):
    lens = logit_lens(tiny_model, PROMPTS)
    batch = interp.tokenize(tiny_model, PROMPTS)
    with torch.no_grad():
        hf_logits = tiny_model.original_model(batch.tokens, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(lens.logprobs[-1], hf_logits.log_softmax(-1), atol=1e-4, rtol=0)
    torch.testing.assert_close(lens.kl_to_final()[-1], torch.tensor(0.0), atol=1e-5, rtol=0)
    assert lens.final_norm_applied and lens.layer_names == ["embed", "0", "1"]


def test_every_layer_matches_hf_decoding(tiny_model):
    lens = logit_lens(tiny_model, PROMPTS)
    batch = interp.tokenize(tiny_model, PROMPTS)
    torch.testing.assert_close(lens.logprobs, _hf_decode(tiny_model, batch.tokens, batch.attention_mask),
                               atol=1e-4, rtol=0)


def test_queries_agree_with_logprobs_and_bounded_mode(tiny_gpt2):
    full = logit_lens(tiny_gpt2, PROMPTS, target=" the")
    bounded = logit_lens(tiny_gpt2, PROMPTS, target=" the", max_elements=1000)
    with pytest.raises(ValueError, match="memory budget"):
        _ = bounded.logprobs
    target = interp.to_single_token(tiny_gpt2, " the")
    lp = full.logprobs
    torch.testing.assert_close(full.prob(), lp[..., target].exp())
    torch.testing.assert_close(full.rank(), (lp > lp[..., target : target + 1]).sum(-1))
    kl = (lp[-1].exp() * (lp[-1] - lp)).sum(-1).mean((1, 2))
    torch.testing.assert_close(full.kl_to_final(), kl)
    assert (full.kl_to_final()[:-1] >= 0).all()
    for name in ("prob", "rank", "kl_to_final"):
        torch.testing.assert_close(getattr(bounded, name)(), getattr(full, name)(), atol=1e-5, rtol=0)
    for got, want in zip(bounded.top_tokens(3, pos=2), full.top_tokens(3, pos=2), strict=True):
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [p for _, p in got] == pytest.approx([p for _, p in want], abs=1e-6)
    best = lp[:, 0, -1].topk(2)
    got = torch.tensor([[p for _, p in layer] for layer in full.top_tokens(2)])
    torch.testing.assert_close(got, best.values.exp(), atol=1e-6, rtol=0)


def test_negative_positions_follow_each_prompts_last_token(tiny_llama):
    lens = logit_lens(tiny_llama, PROMPTS, positions=[-1, 0])
    batch = interp.tokenize(tiny_llama, PROMPTS)
    last = batch.attention_mask.sum(-1) - 1
    assert lens.positions[:, 0].tolist() == last.tolist() and lens.positions[:, 1].tolist() == [0, 0]
    full = logit_lens(tiny_llama, PROMPTS)
    for b in range(2):
        torch.testing.assert_close(lens.logprobs[:, b, 0], full.logprobs[:, b, int(last[b])])


def test_without_final_norm(tiny_gpt2):
    lens = logit_lens(tiny_gpt2, "The cat", apply_final_norm=False)
    cap = interp.capture(tiny_gpt2, "The cat", names=["resid_post"])
    raw = (cap.resid(1, "post") @ tiny_gpt2.W_U + tiny_gpt2.b_U).log_softmax(-1)
    assert not lens.final_norm_applied
    torch.testing.assert_close(lens.logprobs[-1], raw, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": " cat sat on"}, "exactly one token"),
    ({"target": 10**6}, "target=1000000"),
    ({"target": [" the"] * 3}, "3 targets for 2 prompts"),
    ({"positions": [7]}, "position 7 is out of range"),
    ({"positions": [-8]}, "position -8 is out of range"),
])
def test_bad_input(tiny_gpt2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        logit_lens(tiny_gpt2, ["The cat sat", "A dog ran"], **kwargs)


def test_outputs(tiny_gpt2):
    lens = logit_lens(tiny_gpt2, "The cat sat on", target=" the")
    frame = lens.to_frame()
    assert len(frame) == 3 * lens.tokens.shape[1]
    columns = {"layer", "position", "token", "top_token", "top_prob", "kl_to_final", "target_prob", "target_rank"}
    assert columns <= set(frame.columns)
    assert len(lens.figure().data) == 3
    first = lens.first_top1_layer()[0]
    ranks = lens.rank()[:, 0, -1]
    assert (first is None and ranks[-1] != 0) or (ranks[first:] == 0).all()


def test_identity_tuned_lens_is_the_logit_lens(tiny_model):
    from interp.lens.tuned import _identity

    info = interp.model_info(tiny_model)
    lens = TunedLens(info.n_layers, info.d_model, _identity(tiny_model, info))
    torch.testing.assert_close(lens.apply(tiny_model, PROMPTS).logprobs, logit_lens(tiny_model, PROMPTS).logprobs)


def test_tuned_lens_trains_saves_and_refuses_other_models(tiny_gpt2, tiny_llama, tmp_path):
    from interp.reference.world_text import world_tokens

    lens = TunedLens.train(tiny_gpt2, steps=40, n_seqs=8, lr=3e-3, progress=False)
    held_out = world_tokens(tiny_gpt2, 8, seed=99)
    tuned_kl = lens.apply(tiny_gpt2, held_out).kl_to_final()
    logit_kl = logit_lens(tiny_gpt2, held_out).kl_to_final()
    assert (tuned_kl[:-1] < logit_kl[:-1]).all()
    path = lens.save(tmp_path / "lens.safetensors")
    again = TunedLens.load(path, tiny_gpt2)
    assert torch.equal(again.weight, lens.weight) and torch.equal(again.bias, lens.bias)
    # Same shapes (2 layers, d_model 32, vocab 300), different weights: the fingerprint tells them apart.
    with pytest.raises(ValueError, match="trained for"):
        TunedLens.load(path, tiny_llama)
    with pytest.raises(ValueError, match="trained for"):
        again.apply(tiny_llama, "The cat")


def test_load_for_and_bad_files(tiny_gpt2, tiny_gpt2_dir, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="TunedLens.train"):
        TunedLens.load_for(tiny_gpt2)
    lens = TunedLens.train(tiny_gpt2, steps=2, n_seqs=2, progress=False)
    shipped = lens.save(tiny_gpt2_dir / FILENAME)
    try:
        assert torch.equal(TunedLens.load_for(tiny_gpt2).weight, lens.weight)
    finally:
        shipped.unlink()
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a tuned lens"):
        TunedLens.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable"):
        TunedLens.load(tmp_path / "junk.safetensors")


def _hf_probs(model, prompt):
    batch = interp.tokenize(model, prompt)
    with torch.no_grad():
        return model.original_model(batch.tokens, attention_mask=batch.attention_mask).logits.softmax(-1)[0]


def test_target_figure_plots_the_lens_own_numbers(tiny_model):
    from interp.lens.plots import row_labels

    prompt = "The cat sat on the mat"
    lens = logit_lens(tiny_model, prompt, target=" the")
    info = interp.model_info(tiny_model)
    labels = row_labels(lens)
    assert len(labels) == len(lens.layer_names) == info.n_layers + 1 == lens.resid.shape[0]
    assert labels[0] == "embed" and labels[1] == "block 0" and labels[-1] == f"block {info.n_layers - 1} (output)"
    fig = lens.target_figure(columns=[-1, 1])
    assert len(fig.data) == 4  # probability and rank, for each of the two positions
    prob, rank = lens.prob()[:, 0], lens.rank()[:, 0]
    for (p_trace, r_trace), col in zip([fig.data[:2], fig.data[2:]], [lens.tokens.shape[1] - 1, 1], strict=True):
        assert list(p_trace.x) == list(r_trace.x) == labels
        assert list(p_trace.y) == pytest.approx(prob[:, col].tolist())
        assert list(r_trace.y) == (rank[:, col] + 1).tolist()  # drawn 1-based: 1 = top prediction
    # The last layer is the model's own prediction: the HF model's probability of the target.
    target = interp.to_single_token(tiny_model, " the")
    hf = _hf_probs(tiny_model, prompt)
    assert fig.data[0].y[-1] == pytest.approx(float(hf[-1, target]), abs=1e-5)
    assert fig.data[1].y[-1] == int((hf[-1] > hf[-1, target]).sum()) + 1
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    bottom, top = fig.layout.yaxis2.range  # reversed: rank 1 (the top prediction) at the top, always shown
    assert top <= 0 < bottom and 10**bottom >= int(rank.max()) + 1
    low, high = fig.layout.yaxis.range  # every plotted probability is inside the drawn range
    assert all(10**low <= p <= 10**high for trace in fig.data[::2] for p in trace.y if p > 0)
    name = interp.model_info(tiny_model).display_name
    assert name in fig.layout.title.text and "/" not in fig.layout.title.text
    with pytest.raises(ValueError, match="no target"):
        logit_lens(tiny_model, prompt).target_figure()


def test_heatmap_rows_cells_text_and_contrast(tiny_gpt2):
    from plotly.colors import sample_colorscale

    from interp.lens.plots import COLORSCALE, quoted, row_labels

    def lum(color):  # WCAG 2 relative luminance, written out here rather than taken from the module
        if color.startswith("#"):
            rgb = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        else:
            rgb = [float(c) / 255 for c in color.strip("rgb()").split(",")]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    prompt = "The cat sat on the mat"
    lens = logit_lens(tiny_gpt2, prompt, target=" the")
    fig = lens.heatmap_figure()
    heat = fig.data[0]
    n_rows, n_cols = len(lens.layer_names), lens.tokens.shape[1]
    assert len(fig.data) == 1 and len(heat.z) == n_rows and len(heat.z[0]) == n_cols
    assert list(fig.layout.yaxis.ticktext) == row_labels(lens)
    assert list(fig.layout.yaxis.tickvals) == list(range(n_rows))
    assert len(fig.layout.xaxis.ticktext) == n_cols and fig.layout.height >= 38 * n_rows + 100
    assert "probability" in heat.colorbar.title.text and heat.colorscale[0][1] != heat.colorscale[-1][1]
    # Last row: the HF model's own top token and probability at every position.
    hf = _hf_probs(tiny_gpt2, prompt)
    assert list(heat.z[-1]) == pytest.approx(hf.max(-1).values.tolist(), abs=1e-5)
    notes = {(a.y, a.x): a for a in fig.layout.annotations}
    assert len(notes) == n_rows * n_cols
    for col, best in enumerate(hf.argmax(-1).tolist()):
        word = tiny_gpt2.tokenizer.decode([best])
        assert f"top prediction {quoted(word)}" in heat.hovertext[-1][col]
        shown = notes[(n_rows - 1, col)].text.removeprefix("<b>").removesuffix("</b>")
        word = word.replace("\n", "\\n").replace("\t", "\\t")
        assert html.unescape(shown) == word or (shown.endswith("…") and word.startswith(html.unescape(shown[:-1])))
    # Every cell's text contrasts with its cell colour (WCAG AA: at least 4.5:1).
    for (row, col), note in notes.items():
        cell = lum(sample_colorscale(COLORSCALE, [heat.z[row][col]])[0])
        ink = lum(note.font.color)
        ratio = (max(cell, ink) + 0.05) / (min(cell, ink) + 0.05)
        assert ratio >= 4.5, (row, col, heat.z[row][col], note.font.color)
    # Hover: layer, position, input token, top prediction and p, target p and rank.
    t_prob, t_rank = lens.prob()[-1, 0, 2], lens.rank()[-1, 0, 2]
    hover = heat.hovertext[-1][2]
    assert row_labels(lens)[-1] in hover and quoted(lens.str_tokens[0][2]) in hover
    assert f"p = {float(t_prob):.3g}, rank {int(t_rank) + 1}" in hover
    name = interp.model_info(tiny_gpt2).display_name
    assert name in fig.layout.title.text and "/" not in fig.layout.title.text.replace("</sup>", "")


def test_heatmap_window_and_combined_figure(tiny_llama):
    lens = logit_lens(tiny_llama, "The cat sat on the mat and the dog", target=" the")
    n = lens.tokens.shape[1]
    window = lens.heatmap_figure(columns=[2, 3, 4])
    top, p_top = lens.top1()
    torch.testing.assert_close(torch.tensor(window.data[0].z), p_top[:, 0, 2:5])
    assert len(window.layout.annotations) == 3 * len(lens.layer_names)
    assert f"positions 2-4 of {n}" in window.layout.title.text
    with pytest.raises(ValueError, match="valid indices"):
        lens.heatmap_figure(columns=[n])
    both = lens.figure()
    assert [t.type for t in both.data] == ["scatter", "scatter", "heatmap"]  # trajectory on top, map below
    assert list(both.data[0].y) == pytest.approx(lens.prob()[:, 0, -1].tolist())
    assert both.layout.yaxis3.domain[1] < both.layout.yaxis.domain[0]  # the map sits below the trajectory
    cells = [a for a in both.layout.annotations if a.xref != "paper"]
    assert len(cells) == n * len(lens.layer_names) and all(a.xref == "x3" and a.yref == "y3" for a in cells)


def test_tuned_lens_figures_name_the_model(tiny_gpt2):
    from interp.lens.tuned import _identity

    info = interp.model_info(tiny_gpt2)
    tuned = TunedLens(info.n_layers, info.d_model, _identity(tiny_gpt2, info)).apply(tiny_gpt2, "The cat sat",
                                                                                     target=" the")
    assert tuned.lens == "tuned" and tuned.model_name == info.name
    fig = tuned.target_figure()
    assert "tuned lens" in fig.layout.title.text and info.display_name in fig.layout.title.text
    assert list(fig.data[0].y) == pytest.approx(tuned.prob()[:, 0, -1].tolist())
