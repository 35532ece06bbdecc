"""Shared fixtures: tiny random-weight GPT-2 and Llama (GQA) checkpoints saved in HF layout.

Built once per session from configs (never downloaded), seeded, and saved to a temporary
directory with a small byte-level BPE tokenizer, so tests exercise the real loading path.
Other test modules reuse ``tiny_gpt2``, ``tiny_llama`` and the parametrized ``tiny_model``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import interp

BOS = "<|endoftext|>"
SENTENCES = [
    "The Eiffel Tower is located in the city of Paris.",
    "The cat sat on the mat and the dog sat on the log.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "Paris is the capital of France and Rome is the capital of Italy.",
    "One two three four five six seven eight nine ten.",
]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=BOS)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """Byte-level BPE, vocab 300, ``<|endoftext|>`` (id 0) as BOS, EOS and PAD."""
    return _tokenizer()


def _save(model: torch.nn.Module, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """GPT-2: 2 layers, 4 heads, d_model 32, d_mlp 128, n_ctx 32, vocab 300."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_head=4, n_embd=32, n_positions=32, vocab_size=len(tiny_tokenizer),
        bos_token_id=0, eos_token_id=0,
    )
    return _save(GPT2LMHeadModel(config), tiny_tokenizer, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """Llama with GQA: 2 layers, 4 query heads, 2 kv heads, hidden 32, intermediate 64, tied
    embeddings, max_position_embeddings 64, vocab 300."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
        intermediate_size=64, tie_word_embeddings=True, max_position_embeddings=64,
        vocab_size=len(tiny_tokenizer), bos_token_id=0, eos_token_id=0,
        # No pad_token_id: it would zero the BOS embedding row (BOS = PAD = 0 here).
        pad_token_id=None,
    )
    return _save(LlamaForCausalLM(config), tiny_tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    """The tiny GPT-2 loaded through :func:`interp.load` on the CPU."""
    return interp.load(tiny_gpt2_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    """The tiny GQA Llama loaded through :func:`interp.load` on the CPU."""
    return interp.load(tiny_llama_dir, device="cpu")


@pytest.fixture(params=["gpt2", "llama"])
def tiny_model(request):
    """Each tiny model in turn (parametrized over both architectures)."""
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture(params=["gpt2", "llama"])
def tiny_model_dir(request) -> Path:
    """Each tiny checkpoint directory in turn."""
    return request.getfixturevalue(f"tiny_{request.param}_dir")
