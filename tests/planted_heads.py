"""A 2-layer GPT-2 whose weights are set by hand: one previous-token head in layer 0 and one induction head
in layer 1, at head indices drawn at random, so detectors must find heads they were never told about.

Residual stream layout (d_model 256): dims 0..63 hold the current token (one-hot embedding, vocab 64),
64..95 the position (one-hot learned positions, n_ctx 32), 96..159 the previous token, written there by
the layer-0 head. Every other weight is zero, so nothing else moves information.
"""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB, N_CTX, D_MODEL, N_HEADS, D_HEAD = 64, 32, 256, 4, 64
TOK, POS, PREV = 0, 64, 96


def tokenizer():
    """A word-level tokenizer ``<|endoftext|> t1 .. t63`` (id 0 is BOS/EOS/PAD)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, **{f"t{i}": i for i in range(1, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def build(folder: Path, prev_head: int, induction_head: int, copy_sign: float = 1.0, *, sharpness: float = 1.0) -> Path:
    """Save the planted model to ``folder``; ``copy_sign=-1`` makes the induction head anti-copy.

    ``sharpness`` scales both heads' query weights, hence their attention scores. At 1 the scores are ~16 after
    the LayerNorm and the softmax is saturated: the attention pattern is exactly one-hot to float precision, so
    the gradient through it is ~0 (what defeats plain attribution patching). At 0.15 the heads' strongest key gets
    about half of their attention, as in trained heads, and gradients flow. ``copy_sign`` also scales the induction
    head's write (0.3 keeps the output softmax from saturating).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=N_CTX, n_embd=D_MODEL, n_layer=2, n_head=N_HEADS,
                        n_inner=4 * D_MODEL, bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    model = GPT2LMHeadModel(config)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for name in sd:
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            sd[name] = torch.ones_like(sd[name])
        if name.endswith("attn.bias") or name.endswith("masked_bias"):
            sd[name] = model.state_dict()[name]
    sd["transformer.wte.weight"][:, TOK:TOK + VOCAB] = torch.eye(VOCAB)
    sd["transformer.wpe.weight"][:, POS:POS + N_CTX] = torch.eye(N_CTX)
    if "lm_head.weight" in sd:  # tied to wte: loading zeros here would overwrite the embedding
        sd["lm_head.weight"] = sd["transformer.wte.weight"]
    q, k, v = 0, D_MODEL, 2 * D_MODEL  # column offsets of Q, K, V in GPT-2's fused c_attn (Conv1D: x @ W)

    # Layer 0, previous-token head: the query of position p matches the key of position p - 1.
    w, o, h = sd["transformer.h.0.attn.c_attn.weight"], sd["transformer.h.0.attn.c_proj.weight"], prev_head * D_HEAD
    for p in range(N_CTX):
        w[POS + p, q + h + p] = sharpness
        if p + 1 < D_HEAD:
            w[POS + p, k + h + p + 1] = 1.0
    for t in range(VOCAB):
        w[TOK + t, v + h + t] = 1.0
        o[h + t, PREV + t] = 0.1  # write the attended (previous) token into the PREV block
    # Layer 1, induction head: the query's token matches a key whose previous token it is.
    w, o = sd["transformer.h.1.attn.c_attn.weight"], sd["transformer.h.1.attn.c_proj.weight"]
    h = induction_head * D_HEAD
    for t in range(VOCAB):
        w[TOK + t, q + h + t] = 2.0 * sharpness
        w[PREV + t, k + h + t] = 1.0
        w[TOK + t, v + h + t] = 1.0
        o[h + t, TOK + t] = copy_sign  # raise (or lower) the logit of the attended token
    model.load_state_dict(sd)
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
