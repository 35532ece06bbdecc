"""Memory-bounded pieces of the induction report and the head ablations equal the whole-tensor computations.

The copying score builds only the probe's columns of the unembedding (never a float64 copy of ``[d_model, vocab]``)
and splits W_O by layer; next-token losses take their log-softmax a few rows at a time. Each is checked here against
the straightforward whole-tensor computation, written out independently.
"""

from __future__ import annotations

import pytest
import torch

from interp.core.model_info import model_info
from interp.core.unembedding import centred_unembed
from interp.heads import ablation
from interp.heads.ablation import next_token_losses
from interp.heads.induction import copying_scores, repeated_random_tokens


def whole_unembed(model):
    """``diag(gain) @ W_U``, LayerNorm-centred over d_model, then centred over the whole vocabulary, in float64."""
    w_u = model.W_U.detach().double()
    gain = getattr(getattr(model.ln_final, "original_component", None), "weight", None)
    if gain is not None:
        w_u = gain.detach().double()[:, None] * w_u
    if model_info(model).norm == "layernorm":
        w_u = w_u - w_u.mean(0, keepdim=True)
    return w_u - w_u.mean(1, keepdim=True)


def whole_copying_scores(model, cap, tokens, source):
    """All layers at once from the whole float64 unembedding, as the report computed it before."""
    n_layers = model_info(model).n_layers
    u = whole_unembed(model)[:, tokens[:, source].flatten()]
    out = torch.einsum("lhdm,mn->lhnd", model.W_O.detach().double(), u)
    values = torch.stack([cap.v(layer, expand=True)[:, source] for layer in range(n_layers)])
    values = values.double().flatten(1, 2).transpose(1, 2)
    eig = torch.linalg.eigvals(torch.einsum("lhnd,lhne->lhde", out, values))
    return (eig.real.sum(-1) / eig.abs().sum(-1)).float()


def test_unembed_columns_equal_whole_matrix(tiny_model):
    columns = torch.tensor([0, 3, 3, 17, model_info(tiny_model).d_vocab - 1])
    before = tiny_model.W_U.detach().clone()
    torch.testing.assert_close(centred_unembed(tiny_model, columns), whole_unembed(tiny_model)[:, columns],
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(centred_unembed(tiny_model), whole_unembed(tiny_model), atol=1e-12, rtol=0)
    assert torch.equal(tiny_model.W_U, before)  # built in copies: the model is untouched


def test_copying_scores_equal_whole_computation(tiny_model):
    import interp

    seq_len, batch = 6, 3
    tokens = repeated_random_tokens(tiny_model, seq_len, batch, seed=1)
    bos = tokens.shape[1] - 2 * seq_len
    cap = interp.capture(tiny_model, tokens, names=["v"])
    source = slice(bos, bos + seq_len)
    torch.testing.assert_close(copying_scores(tiny_model, model_info(tiny_model), cap, tokens, source),
                               whole_copying_scores(tiny_model, cap, tokens, source), atol=1e-6, rtol=0)


@pytest.mark.parametrize("loss_bytes", [1, 4 * 7 * 50 * 2, 2**26])  # one row, two rows, all rows per chunk
def test_chunked_losses_are_bit_identical(monkeypatch, loss_bytes):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 50, generator=generator)
    tokens = torch.randint(50, (5, 7), generator=generator)
    whole = -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    monkeypatch.setattr(ablation, "LOSS_BYTES", loss_bytes)
    losses = next_token_losses(logits, tokens)
    assert torch.equal(losses[:, :-1], whole)
    assert torch.equal(losses[:, -1], torch.zeros(5))
