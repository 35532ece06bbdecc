"""The reference models' shared tokenizer: a byte-level BPE trained on the world, wrapped for Hugging Face."""

from __future__ import annotations

from interp.reference.world import NAMES, NOUNS, World

BOS = "<|endoftext|>"
"""The one special token: beginning of text, end of text and padding."""


def train_tokenizer(world: World, vocab_size: int, n_docs: int):
    """Train a byte-level BPE tokenizer on the world's documents and every fact string."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Fact objects, names and nouns are repeated so that BPE gives each name and noun (and common objects) a token
    # of its own: the indirect-object and agreement tasks compare one token per name or noun form.
    strings = [f" {f['object']}" for f in world.facts] + [f" {w}" for w in single_token_words()] + NAMES
    texts = world.documents(n_docs) + strings * 60
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def single_token_words() -> list[str]:
    """Names and noun forms that the world's tokenizer must keep whole (each is one token after a space)."""
    return NAMES + [form for pair in NOUNS for form in pair]


def hf_tokenizer(tok):
    """Wrap a ``tokenizers`` tokenizer for Hugging Face (BOS = EOS = PAD = ``<|endoftext|>``)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS,
                                   unk_token=BOS, model_max_length=10**6)
