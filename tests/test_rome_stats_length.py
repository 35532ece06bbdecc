"""ROME's default key statistics read sequences whose attention fits one pass (issue #21: Llama 3's 8192-token
context asked for an 8.6 GB score tensor per layer).

The lengths are checked against the rule computed by hand for real shapes, and the statistics over shortened
sequences against an independent capture of the same tokens.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import interp
from interp import rome
from interp.reference.world_text import world_tokens
from interp.rome import keys


@pytest.fixture(autouse=True)
def stats_cache(tmp_path, monkeypatch):
    """ROME's caches go to a temporary folder, never to the user's."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(("n_ctx", "n_heads", "expected"), [
    (1024, 12, 1024),  # GPT-2 small: 12 x 1024^2 x 4 B = 48 MiB of scores, the context stays
    (2048, 16, 2048),  # Pythia-410M: 256 MiB
    (8192, 32, 2048),  # Llama 3 (1B and 8B): 32 x 2048^2 x 4 B = 512 MiB = PASS_BYTES exactly
    (64, 4, 64),  # the reference models
])
def test_stats_length_of_real_shapes(monkeypatch, n_ctx, n_heads, expected):
    monkeypatch.setattr(keys, "model_info", lambda model: SimpleNamespace(n_ctx=n_ctx, n_heads=n_heads))
    assert keys.stats_length(None) == expected


def test_key_stats_over_shortened_sequences(tiny_gpt2, monkeypatch):
    info = interp.model_info(tiny_gpt2)
    length = info.n_ctx // 2 - 1
    monkeypatch.setattr(keys, "PASS_BYTES", 4 * info.n_heads * length**2 + 1)  # one row of `length` fits, no more
    assert keys.stats_length(tiny_gpt2) == length
    mom2 = rome.key_stats(tiny_gpt2, 1, 64, max_tokens=3 * length - 5, progress=False)  # rounds up to 3 sequences
    assert rome.stats_path(tiny_gpt2, 1, 3).is_file()
    tokens = world_tokens(tiny_gpt2, 3, length, seed=1)
    neurons = interp.capture(tiny_gpt2, tokens, names=["neurons"]).neurons(1).reshape(-1, info.d_mlp).double()
    assert neurons.shape[0] == 3 * length
    torch.testing.assert_close(mom2, (neurons.T @ neurons / neurons.shape[0]).float(), rtol=1e-5, atol=1e-6)
