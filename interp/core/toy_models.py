"""Random-weight GPT-2 and Llama checkpoints in Hugging Face layout, for tests and benchmarks.

Nothing is downloaded: the model is built from a config with seeded random weights and saved
with a small byte-level BPE tokenizer trained on a few sentences, so the files exercise the
same loading path as a real checkpoint (``config.json`` + ``model.safetensors`` + tokenizer).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.core.files import atomic_dir, check_can_write

BOS = "<|endoftext|>"
"""The tokenizer's one special token: BOS, EOS, PAD and UNK at id 0."""

SENTENCES = (
    "The Eiffel Tower is located in the city of Paris.",
    "The cat sat on the mat and the dog sat on the log.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "Paris is the capital of France and Rome is the capital of Italy.",
    "One two three four five six seven eight nine ten.",
)
"""The text the toy tokenizer is trained on."""


@dataclass(frozen=True)
class ToyConfig:
    """Sizes of a toy model (defaults: the tiny test GPT-2)."""

    arch: str = "gpt2"
    """``"gpt2"`` or ``"llama"``."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Query heads."""
    n_kv_heads: int | None = None
    """Key/value heads (Llama only; ``None`` means as many as query heads)."""
    d_model: int = 32
    """Residual stream width."""
    d_mlp: int | None = None
    """MLP width (``None``: 4 * d_model for GPT-2, 2 * d_model for Llama)."""
    n_ctx: int = 32
    """Context window (GPT-2 ``n_positions``, Llama ``max_position_embeddings``)."""
    vocab_size: int = 300
    """Model vocabulary; the tokenizer's own vocabulary is at most this."""
    seed: int = 0
    """Seed of the weight initialisation."""


def toy_tokenizer(vocab_size: int = 300) -> Any:
    """Train a byte-level BPE tokenizer on :data:`SENTENCES`, wrapped for Hugging Face.

    Examples:
        >>> tok = toy_tokenizer()
        >>> tok.bos_token_id, tok.pad_token_id, tok.decode(tok.encode("The cat"))
        (0, 0, 'The cat')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(SENTENCES) * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=BOS)


def toy_model(config: ToyConfig) -> torch.nn.Module:
    """Build a seeded random-weight ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` (eval mode).

    Raises:
        ValueError: ``config.arch`` is not ``"gpt2"`` or ``"llama"``.
    """
    torch.manual_seed(config.seed)
    if config.arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        hf_config = GPT2Config(
            n_layer=config.n_layers, n_head=config.n_heads, n_embd=config.d_model, n_inner=config.d_mlp,
            n_positions=config.n_ctx, vocab_size=config.vocab_size, bos_token_id=0, eos_token_id=0,
        )
        return GPT2LMHeadModel(hf_config).eval()
    if config.arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        hf_config = LlamaConfig(
            num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
            num_key_value_heads=config.n_kv_heads or config.n_heads, hidden_size=config.d_model,
            intermediate_size=config.d_mlp or 2 * config.d_model, max_position_embeddings=config.n_ctx,
            vocab_size=config.vocab_size, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
            # No pad_token_id: HF would zero its embedding row, and PAD is BOS (id 0) here.
            pad_token_id=None,
        )
        return LlamaForCausalLM(hf_config).eval()
    raise ValueError(f"arch={config.arch!r}; valid architectures are 'gpt2' and 'llama'")


def save_checkpoint(folder: str | Path, model: Any, tokenizer: Any, *, overwrite: bool = False) -> Path:
    """Save ``model`` and ``tokenizer`` (``save_pretrained``) to ``folder``, all or nothing.

    Both are written to a temporary folder beside ``folder`` and renamed into place once complete, so an
    interrupted save leaves no half-written checkpoint (:func:`interp.core.files.atomic_dir`).

    Args:
        folder: The checkpoint folder; it must not exist or be empty unless ``overwrite``.
        model: A Hugging Face model.
        tokenizer: Its tokenizer.
        overwrite: Replace an existing checkpoint in ``folder``.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        FileExistsError: ``folder`` is a file or a non-empty folder and ``overwrite`` is False.
    """
    folder = Path(folder)
    check_can_write(folder, overwrite)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def save_toy_checkpoint(folder: str | Path, config: ToyConfig = ToyConfig(), *, overwrite: bool = False) -> Path:
    """Save a toy model and its tokenizer to ``folder`` in Hugging Face layout (see :func:`save_checkpoint`).

    Args:
        folder: The checkpoint folder; it must not exist or be empty unless ``overwrite``.
        config: The toy model's sizes.
        overwrite: Replace an existing checkpoint in ``folder``.

    Returns:
        ``folder`` as a ``Path``, loadable with :func:`interp.load`.

    Raises:
        FileExistsError: ``folder`` is a file or a non-empty folder and ``overwrite`` is False.

    Examples:
        >>> import tempfile, interp
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     interp.model_info(interp.load(save_toy_checkpoint(folder), device="cpu")).n_layers
        2
    """
    check_can_write(folder, overwrite)  # before building the model
    return save_checkpoint(folder, toy_model(config), toy_tokenizer(min(config.vocab_size, 300)), overwrite=overwrite)


_FOLDERS: list[tempfile.TemporaryDirectory] = []


@functools.cache
def load_toy(config: ToyConfig = ToyConfig()) -> Any:
    """Save a toy checkpoint to a temporary directory and load it with :func:`interp.load` (CPU).

    Cached per config, so repeated calls (doctests, notebooks) share one model: do not modify
    its weights. The directory is removed when the interpreter exits.

    Examples:
        >>> model = load_toy()
        >>> model is load_toy()
        True
    """
    from interp.core.loading import load

    folder = tempfile.TemporaryDirectory(prefix=f"interp-toy-{config.arch}-")
    _FOLDERS.append(folder)
    return load(save_toy_checkpoint(folder.name, config), device="cpu")
