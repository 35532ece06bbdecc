"""Shared fixtures: tiny random-weight GPT-2 and Llama (GQA) checkpoints saved in HF layout.

Built once per session from configs (never downloaded), seeded, and saved to a temporary
directory with a small byte-level BPE tokenizer (:mod:`interp.core.toy_models`), so tests exercise
the real loading path. Other test modules reuse ``tiny_gpt2``, ``tiny_llama`` and the
parametrized ``tiny_model``; the loaded models are shared, so tests must not modify them
(load a fresh copy from ``tiny_gpt2_dir`` / ``tiny_llama_dir`` to edit weights).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import interp
from interp.core.toy_models import ToyConfig, save_toy_checkpoint

TINY_GPT2 = ToyConfig(arch="gpt2", n_layers=2, n_heads=4, d_model=32, d_mlp=128, n_ctx=32, vocab_size=300)
"""GPT-2: 2 layers, 4 heads, d_model 32, d_mlp 128, n_ctx 32, vocab 300."""
TINY_LLAMA = ToyConfig(
    arch="llama", n_layers=2, n_heads=4, n_kv_heads=2, d_model=32, d_mlp=64, n_ctx=64, vocab_size=300
)
"""Llama with GQA: 2 layers, 4 query / 2 kv heads, hidden 32, intermediate 64, tied embeddings, 64 positions."""


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """Checkpoint directory of the tiny GPT-2 (:data:`TINY_GPT2`)."""
    return save_toy_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"), TINY_GPT2)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """Checkpoint directory of the tiny GQA Llama (:data:`TINY_LLAMA`)."""
    return save_toy_checkpoint(tmp_path_factory.mktemp("tiny-llama"), TINY_LLAMA)


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    """The tiny GPT-2 loaded through :func:`interp.load` on the CPU (shared: do not modify)."""
    return interp.load(tiny_gpt2_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    """The tiny GQA Llama loaded through :func:`interp.load` on the CPU (shared: do not modify)."""
    return interp.load(tiny_llama_dir, device="cpu")


@pytest.fixture(params=["gpt2", "llama"])
def tiny_model(request):
    """Each tiny model in turn (parametrized over both architectures)."""
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture(params=["gpt2", "llama"])
def tiny_model_dir(request) -> Path:
    """Each tiny checkpoint directory in turn."""
    return request.getfixturevalue(f"tiny_{request.param}_dir")
