"""The lens at scale: kept summaries (top-k, target prob/rank, KL) equal the full-tensor numbers, slices on request.

The full ``[layer batch pos vocab]`` log-probabilities are rebuilt here independently, from Hugging Face's own
hidden states, final norm and ``lm_head``; the lens computes its summaries a slice of positions at a time through
the bridge and never keeps that tensor unless asked.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import interp
from interp.lens.scan import CHUNK_ELEMENTS, Readout, _top_ids, row_chunk, scan
from interp.lens.tuned import TunedLens, _identity

PROMPTS = ["The cat sat on the mat", "Paris is the capital of France and"]
ATOL = 1e-4
"""Log-probabilities through the bridge vs HF (float32, different matmul shapes)."""


def _hf_logprobs(model, prompts, translate=None):
    """Every lens layer decoded with the HF modules directly: hidden states -> (translator) -> final norm -> lm_head."""
    hf = model.original_model
    norm = hf.transformer.ln_f if hasattr(hf, "transformer") else hf.model.norm
    batch = interp.tokenize(model, prompts)
    with torch.no_grad():
        out = hf(batch.tokens, attention_mask=batch.attention_mask, output_hidden_states=True)
        hidden = list(out.hidden_states[:-1])
        if translate is not None:
            weight, bias = translate
            hidden = [h + h @ weight[i].T + bias[i] for i, h in enumerate(hidden)]
        # HF's last hidden state already went through the final norm; the others are raw residuals.
        layers = [hf.lm_head(norm(h)) for h in hidden] + [out.logits]
    return torch.stack(layers).log_softmax(-1)


def _assert_summaries_match(lens, full, target):
    """Top-k, target prob/rank and KL of ``lens`` against the full tensor ``full`` [layer batch pos vocab]."""
    k = lens.kept().top_ids.shape[-1]
    best = full.topk(k)
    torch.testing.assert_close(lens.kept().top_logprobs, best.values, atol=ATOL, rtol=0)
    # Ids agree wherever the full tensor's k-th and (k+1)-th entries are not a near-tie.
    picked = full.gather(-1, lens.kept().top_ids)
    torch.testing.assert_close(picked, best.values, atol=ATOL, rtol=0)
    kl = (full[-1].exp() * (full[-1] - full)).sum(-1)
    torch.testing.assert_close(lens.kl_to_final(reduce=False), kl, atol=1e-5, rtol=0)
    torch.testing.assert_close(lens.kl_to_final(), kl.mean((1, 2)), atol=1e-5, rtol=0)
    own = full[..., target][..., None]
    torch.testing.assert_close(lens.prob(), own[..., 0].exp(), atol=ATOL, rtol=0)
    lo, hi = (full > own + ATOL).sum(-1), (full > own - ATOL).sum(-1)  # rank bounds allowing near-ties
    assert ((lo <= lens.rank()) & (lens.rank() <= hi)).all()


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_summaries_equal_the_full_tensor(tiny_model, chunk_size):
    target = interp.to_single_token(tiny_model, " the")
    lens = interp.logit_lens(tiny_model, PROMPTS, target=" the", top_k=7, chunk_size=chunk_size, progress=False)
    assert lens.logprobs_cache is None  # nothing [layer batch pos vocab] was kept
    full = _hf_logprobs(tiny_model, PROMPTS)
    _assert_summaries_match(lens, full, target)
    assert lens.kept().top_ids.shape == (*full.shape[:-1], 7)
    top, p_top = lens.top1()
    torch.testing.assert_close(p_top, full.max(-1).values.exp(), atol=ATOL, rtol=0)
    assert (full.gather(-1, top[..., None])[..., 0] >= full.max(-1).values - ATOL).all()
    assert lens.logprobs_cache is None


def test_last_layer_is_the_model_and_kl_is_zero(tiny_model):
    lens = interp.logit_lens(tiny_model, PROMPTS, target=" the", chunk_size=5, progress=False)
    batch = interp.tokenize(tiny_model, PROMPTS)
    with torch.no_grad():
        own = tiny_model.original_model(batch.tokens, attention_mask=batch.attention_mask).logits.log_softmax(-1)
    torch.testing.assert_close(lens.full_logprobs(layers=[-1])[0], own, atol=ATOL, rtol=0)
    assert torch.equal(lens.kl_to_final(reduce=False)[-1], torch.zeros_like(own[..., 0]))  # final - final is 0
    torch.testing.assert_close(lens.kept().top_logprobs[-1], own.topk(10).values, atol=ATOL, rtol=0)
    target = interp.to_single_token(tiny_model, " the")
    torch.testing.assert_close(lens.prob()[-1], own[..., target].exp(), atol=ATOL, rtol=0)


def test_gemma2_soft_capped_output_is_the_last_layer(tmp_path):
    """The bridge caps Gemma 2's logits after ``unembed``; with logits far past the cap the lens must cap too."""
    from interp.core.toy_families import save_family

    model = interp.load(save_family("gemma2", tmp_path / "gemma2"), device="cpu")
    with torch.no_grad():
        model.unembed.original_component.weight.mul_(200.0)  # raw logits in the hundreds, the cap is 30
    lens = interp.logit_lens(model, PROMPTS, progress=False)
    batch = interp.tokenize(model, PROMPTS)
    with torch.no_grad():
        own = model.original_model(batch.tokens, attention_mask=batch.attention_mask).logits.float()
        raw = model.unembed(model.ln_final(interp.capture(model, batch, names=["resid_post"]).resid(1, "post")))
    assert own.abs().max() < 30 < raw.abs().max()  # the cap is doing something
    torch.testing.assert_close(lens.full_logprobs(layers=[-1])[0], own.log_softmax(-1), atol=ATOL, rtol=0)
    assert torch.equal(lens.kl_to_final(reduce=False)[-1], torch.zeros_like(own[..., 0]))


def test_full_logprobs_slices_and_the_budget(tiny_gpt2):
    full = interp.logit_lens(tiny_gpt2, PROMPTS, full=True, progress=False)
    lens = interp.logit_lens(tiny_gpt2, PROMPTS, progress=False)
    assert full.logprobs_cache is not None and lens.logprobs_cache is None
    torch.testing.assert_close(full.logprobs, _hf_logprobs(tiny_gpt2, PROMPTS), atol=ATOL, rtol=0)
    part = lens.full_logprobs(layers=[0, -1], columns=[-1, 2])
    assert part.shape == (2, 2, 2, full.logprobs.shape[-1])
    torch.testing.assert_close(part, full.logprobs[[0, -1]][:, :, [full.logprobs.shape[2] - 1, 2]], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"layer=3; the lens has 3 layers, valid indices are -3\.\.2"):
        lens.full_logprobs(layers=[3])
    with pytest.raises(ValueError, match="column=99"):
        lens.full_logprobs(columns=[99])
    small = interp.logit_lens(tiny_gpt2, PROMPTS, max_elements=1000, progress=False)
    with pytest.raises(ValueError, match="memory budget"):
        _ = small.logprobs
    assert small.logprobs_cache is None
    torch.testing.assert_close(lens.logprobs, full.logprobs)  # under the budget: decoded on first read, then kept
    assert lens.logprobs_cache is not None


def test_other_targets_more_top_tokens_and_the_frame(tiny_llama):
    lens = interp.logit_lens(tiny_llama, PROMPTS, target=" the", top_k=2, chunk_size=4, progress=False)
    full = _hf_logprobs(tiny_llama, PROMPTS)
    other = interp.to_single_token(tiny_llama, " of")
    torch.testing.assert_close(lens.prob(" of"), full[..., other].exp(), atol=ATOL, rtol=0)
    own = full[..., other : other + 1]
    assert (((full > own + ATOL).sum(-1) <= lens.rank(" of")) & (lens.rank(" of") <= (full > own - ATOL).sum(-1))).all()
    five = lens.top_tokens(5, pos=3, batch=1)  # more than the 2 kept: decoded for this one position
    torch.testing.assert_close(torch.tensor([[p for _, p in layer] for layer in five]),
                               full[:, 1, 3].topk(5).values.exp(), atol=ATOL, rtol=0)
    two = lens.top_tokens(2, pos=3, batch=1)
    assert [[t for t, _ in layer] for layer in two] == [[t for t, _ in layer[:2]] for layer in five]
    frame = lens.to_frame(batch=1)
    n_pos = lens.tokens.shape[1]
    assert len(frame) == len(lens.layer_names) * n_pos
    torch.testing.assert_close(torch.tensor(frame["kl_to_final"].to_numpy(), dtype=torch.float32).reshape(-1, n_pos),
                               lens.kl_to_final(reduce=False)[:, 1])
    torch.testing.assert_close(torch.tensor(frame["target_prob"].to_numpy(), dtype=torch.float32).reshape(-1, n_pos),
                               full[:, 1, :, interp.to_single_token(tiny_llama, " the")].exp(), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="top_k=0"):
        interp.logit_lens(tiny_llama, PROMPTS, top_k=0)
    with pytest.raises(ValueError, match="chunk_size=0"):
        interp.logit_lens(tiny_llama, PROMPTS, chunk_size=0)


def test_tuned_lens_keeps_the_same_summaries(tiny_gpt2):
    info = interp.model_info(tiny_gpt2)
    tuned = TunedLens(info.n_layers, info.d_model, _identity(tiny_gpt2, info))
    gen = torch.Generator().manual_seed(3)
    tuned.weight = 0.05 * torch.randn(tuned.weight.shape, generator=gen)
    tuned.bias = 0.05 * torch.randn(tuned.bias.shape, generator=gen)
    lens = tuned.apply(tiny_gpt2, PROMPTS, target=" the", chunk_size=3, progress=False)
    assert lens.lens == "tuned" and lens.logprobs_cache is None
    full = _hf_logprobs(tiny_gpt2, PROMPTS, translate=(tuned.weight, tuned.bias))
    _assert_summaries_match(lens, full, interp.to_single_token(tiny_gpt2, " the"))


def test_scan_decodes_at_most_one_chunk_at_a_time():
    resid = torch.randn(4, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    unembed = torch.randn(6, 11, generator=torch.Generator().manual_seed(1))
    seen = []

    def decode(h):
        seen.append(h.shape[1])
        return h @ unembed

    kept = scan(resid, decode, 11, k=3, target=torch.tensor([0, 4, 10]), chunk_size=4)
    assert max(seen) == 4 and sum(seen) == 4 * 15  # 15 rows, each decoded once per lens layer
    full = (resid @ unembed).log_softmax(-1)
    torch.testing.assert_close(kept.top_logprobs, full.topk(3).values)
    torch.testing.assert_close(kept.kl, (full[-1].exp() * (full[-1] - full)).sum(-1))
    ids = torch.tensor([0, 4, 10])[None, :, None, None].expand(4, 3, 5, 1)
    assert torch.equal(kept.target_rank, (full > full.gather(-1, ids)).sum(-1))
    assert row_chunk(50257) * 50257 <= CHUNK_ELEMENTS and row_chunk(10**9) == 1


def _direct_kl(logits):
    """KL(final || layer) from logits [layer ... vocab], in float64: the definition, independently."""
    lp = logits.double().log_softmax(-1)
    return (lp[-1].exp() * (lp[-1] - lp)).sum(-1)


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_fused_kl_equals_the_direct_kl_on_the_models(tiny_model, chunk_size):
    """The lens folds the final distribution into the unembedding (g = p_f W, then KL = g.(n_f - n_l) + lse_l -
    lse_f); that equals the KL over the vocabulary, also when the slices do not divide the rows."""
    lens = interp.logit_lens(tiny_model, PROMPTS, target=" the", chunk_size=chunk_size, progress=False)
    readout = lens.decode
    assert isinstance(readout, Readout)  # the bridge's unembedding is an affine nn.Linear
    rows = lens.resid.shape[1] * lens.resid.shape[2]
    assert chunk_size is None or rows % chunk_size
    with torch.no_grad():
        logits = readout(lens.resid)
    torch.testing.assert_close(lens.kl_to_final(reduce=False).double(), _direct_kl(logits), atol=1e-5, rtol=0)
    plain = scan(lens.resid, lambda h: readout(h), logits.shape[-1], target=lens.target, chunk_size=chunk_size)
    torch.testing.assert_close(lens.kept().kl, plain.kl, atol=1e-5, rtol=0)
    assert torch.equal(lens.kept().top_ids, plain.top_ids) and torch.equal(lens.kept().target_rank, plain.target_rank)
    torch.testing.assert_close(lens.kept().top_logprobs, plain.top_logprobs, atol=0, rtol=0)


def test_fused_kl_ignores_the_bias_and_survives_large_logits():
    """A Readout with a bias, a LayerNorm and logits in the hundreds (GPT-2's range): KL as close to the definition
    computed in float64 throughout as the float32 logits themselves allow (their own KL is ~9e-5 off at this size),
    0 at the final layer, and every row decoded once per lens layer."""
    gen = torch.Generator().manual_seed(4)
    resid = 3 * torch.randn(5, 2, 7, 8, generator=gen)
    weight, bias = 20 * torch.randn(13, 8, generator=gen), 100 * torch.randn(13, generator=gen) - 300
    seen = []

    def unembed(n):
        seen.append(n.shape[-2])
        return n @ weight.T + bias

    def norm(h):
        return torch.nn.functional.layer_norm(h, (8,))

    readout = Readout(norm, unembed, weight)
    logits = readout(resid)
    exact = norm(resid.double()) @ weight.double().T + bias.double()
    kept = scan(resid, readout, 13, k=4, target=torch.tensor([2, 11]), chunk_size=3)
    assert max(seen[1:]) == 3 and sum(seen[1:]) == 5 * 14 and logits.abs().max() > 100
    float32_error = (_direct_kl(logits) - _direct_kl(exact)).abs().max()
    assert 1e-5 < float32_error < 1e-3
    torch.testing.assert_close(kept.kl.double(), _direct_kl(exact), atol=2 * float32_error, rtol=0)
    assert torch.equal(kept.kl[-1], torch.zeros(2, 7))
    full = logits.log_softmax(-1)
    # Log-probs are ``logit - logsumexp`` with both near -300: two float32 log-softmax kernels may differ by an ulp
    # of the logits' magnitude (2**-15 here), which is the resolution these numbers have at all.
    ulp = 2 * torch.finfo(torch.float32).eps * float(logits.abs().max())
    torch.testing.assert_close(kept.top_logprobs, full.topk(4).values, atol=ulp, rtol=0)
    own = full[..., [2, 11]].diagonal(dim1=1, dim2=3).permute(0, 2, 1)
    torch.testing.assert_close(kept.target_logprob, own, atol=ulp, rtol=0)
    lo, hi = (full > own[..., None] + ulp).sum(-1), (full > own[..., None] - ulp).sum(-1)
    assert ((lo <= kept.target_rank) & (kept.target_rank <= hi)).all() and (hi > 0).any()


def test_top_ids_by_blocks_equal_topk():
    """The CPU top-k over block maxima picks the same entries as ``topk`` (random floats: no ties), including
    when the best entries share one block or sit in the ragged tail."""
    gen = torch.Generator().manual_seed(5)
    vocab = 128256 + 37  # a tail of 37 entries past the last whole block
    logits = torch.randn(6, vocab, generator=gen)
    logits[1, 1000:1010] += 50  # row 1: the whole top 10 in one block
    logits[2, -5:] += 50  # row 2: the best five in the tail
    logits[3, ::4096] += 50  # row 3: one per block, far apart
    for k in (1, 10, 25):
        assert torch.equal(_top_ids(logits, k), logits.topk(k).indices), k
    small = torch.randn(3, 300, generator=gen)  # too few blocks: plain topk
    assert torch.equal(_top_ids(small, 10), small.topk(10).indices)


@pytest.mark.parametrize("fold", [True, False])
def test_scan_on_a_large_vocabulary(fold):
    """A vocabulary large enough for the block top-k: the summaries equal the full tensor's, with KL folded into
    the unembedding (a Readout) or by one dot over the vocabulary per layer (any other decoding)."""
    gen = torch.Generator().manual_seed(6)
    vocab, d_model = 20 * 1024 + 11, 16
    resid = torch.randn(4, 2, 5, d_model, generator=gen)
    weight = torch.randn(vocab, d_model, generator=gen)  # logits ~ 4 std: KL of a few nats
    readout = Readout(lambda h: torch.nn.functional.layer_norm(h, (d_model,)), lambda n: n @ weight.T, weight)
    target = torch.tensor([7, vocab - 2])
    kept = scan(resid, readout if fold else lambda h: readout(h), vocab, k=10, target=target, chunk_size=4)
    full = readout(resid).double().log_softmax(-1)
    assert torch.equal(kept.top_ids, full.topk(10).indices)
    torch.testing.assert_close(kept.top_logprobs.double(), full.topk(10).values, atol=1e-5, rtol=0)
    # KL of up to ~25 nats, summed in float32 over 20k tokens (either way): a relative tolerance too.
    torch.testing.assert_close(kept.kl.double(), (full[-1].exp() * (full[-1] - full)).sum(-1), atol=1e-5, rtol=1e-5)
    own = full.gather(-1, target[None, :, None, None].expand(4, 2, 5, 1))
    torch.testing.assert_close(kept.target_logprob.double(), own[..., 0], atol=1e-5, rtol=0)
    lo, hi = (full > own + 1e-5).sum(-1), (full > own - 1e-5).sum(-1)
    assert ((lo <= kept.target_rank) & (kept.target_rank <= hi)).all() and (hi > 0).any()


def test_slices_are_balanced_and_bounded():
    for vocab in (11, 3072, 50257, 128256):
        most = CHUNK_ELEMENTS // vocab
        for rows in (1, 7, most - 1, most, most + 1, 3 * most + 2, 1024):
            step = row_chunk(vocab, rows=rows)
            slices = -(-rows // step)
            assert step * vocab <= CHUNK_ELEMENTS and slices == -(-rows // most), (vocab, rows)
            assert slices * step - rows < slices, (vocab, rows)  # the slices differ by at most one row
    assert row_chunk(50257, 7, rows=1000) == 7


PROBE = """
import re, sys, torch, interp
def rss(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024
folder, mode, pos = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = interp.load(folder, device="cpu")
tokens = torch.randint(1, 50257, (1, pos), generator=torch.Generator().manual_seed(0))
base = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
with torch.no_grad():
    if mode == "forward":
        model(tokens)
    else:
        lens = interp.logit_lens(model, tokens, progress=False)
        lens.kl_to_final(), lens.top1()
print(rss("VmHWM") - base)
"""


@pytest.mark.slow
def test_gpt2_small_lens_at_1024_tokens_stays_near_the_forward(tmp_path):
    """Fresh processes on a GPT-2-small-shaped model: lens peak RSS (over RSS after load) is a small multiple of
    the forward's, and nowhere near the 2.7 GB the full log-probs would take."""
    from interp.core.toy_models import ToyConfig, save_toy_checkpoint

    folder = save_toy_checkpoint(tmp_path / "gpt2-small", ToyConfig(
        arch="gpt2", n_layers=12, n_heads=12, d_model=768, d_mlp=3072, n_ctx=1024, vocab_size=50257))
    peaks = {}
    for mode in ("forward", "lens"):
        out = subprocess.run([sys.executable, "-c", PROBE, str(folder), mode, "1024"], capture_output=True,
                             text=True, check=True)
        peaks[mode] = float(out.stdout.split()[-1])
    print(f"peak RSS over RSS after load, MiB: {peaks}")
    assert peaks["lens"] < 2000, peaks  # MiB; the full [13, 1, 1024, 50257] float32 tensor alone is 2556 MiB
    assert peaks["lens"] <= 2 * peaks["forward"], peaks  # measured 1.1x (1435 vs 1309 MiB)
