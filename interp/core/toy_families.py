"""Tiny random-weight checkpoints of every model family interp is tested on, in Hugging Face layout.

Each family is named by its Hugging Face ``model_type`` and built from a config that keeps the
family's defining features at toy size (2 layers, ``d_model`` 32-64, 4 query heads, 64-token
context, a 300-token vocabulary): grouped-query attention for Llama 3, a sliding window for
Mistral, partial rotary for GPT-NeoX and Phi-3, soft-capping and alternating local/global
attention for Gemma 2, experts for Mixtral and the Qwen MoE models, and so on. Nothing is
downloaded; the tokenizer is :func:`interp.core.toy_models.toy_tokenizer`, as for
:func:`interp.core.toy_models.save_toy_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from interp.core.files import check_can_write
from interp.core.toy_models import save_checkpoint, toy_tokenizer

_VOCAB = 300
_N_CTX = 64
_COMMON: dict[str, Any] = {"vocab_size": _VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": None}
"""Every family: the toy vocabulary, BOS/EOS at id 0, and no ``pad_token_id`` (HF would zero the
embedding row of the pad id, and PAD is BOS here)."""

_ROTARY = {
    "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 64,
    "max_position_embeddings": _N_CTX,
}
"""Sizes shared by the rotary families that use the Llama-style config names."""

_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("GPT2Config", {
        "n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": _N_CTX,
    }),
    "gpt_neox": ("GPTNeoXConfig", {  # Pythia: partial rotary (a quarter of each head), parallel attention + MLP
        "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 128,
        "max_position_embeddings": _N_CTX, "rotary_pct": 0.25, "use_parallel_residual": True,
        "tie_word_embeddings": False,
    }),
    "gptj": ("GPTJConfig", {  # partial rotary (rotary_dim < head dim), parallel attention + MLP
        "n_layer": 2, "n_head": 4, "n_embd": 32, "n_positions": _N_CTX, "rotary_dim": 4,
        "tie_word_embeddings": False,
    }),
    "opt": ("OPTConfig", {  # learned positions offset by 2, ReLU MLP
        "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "ffn_dim": 128,
        "word_embed_proj_dim": 32, "max_position_embeddings": _N_CTX,
    }),
    "llama": ("LlamaConfig", {  # Llama 3: grouped-query attention (4 query / 2 key-value heads), theta 500000
        **_ROTARY, "num_key_value_heads": 2, "rope_theta": 500000.0, "tie_word_embeddings": False,
    }),
    "mistral": ("MistralConfig", {  # sliding window shorter than the context
        **_ROTARY, "num_key_value_heads": 2, "sliding_window": 16, "tie_word_embeddings": False,
    }),
    "qwen2": ("Qwen2Config", {  # biases on q/k/v
        **_ROTARY, "num_key_value_heads": 2, "tie_word_embeddings": True,
    }),
    "qwen3": ("Qwen3Config", {  # RMSNorm on queries and keys
        **_ROTARY, "num_key_value_heads": 2, "head_dim": 8, "tie_word_embeddings": True,
    }),
    "gemma2": ("Gemma2Config", {  # soft-capping, alternating sliding/global layers, pre+post norms, GeGLU
        **_ROTARY, "num_key_value_heads": 2, "head_dim": 8, "sliding_window": 16,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "query_pre_attn_scalar": 8,
    }),
    "gemma3": ("Gemma3TextConfig", {  # q/k norms, local/global layers with their own rotary bases
        **_ROTARY, "num_key_value_heads": 2, "head_dim": 8, "sliding_window": 16, "query_pre_attn_scalar": 8,
        "layer_types": ["sliding_attention", "full_attention"],
    }),
    "phi3": ("Phi3Config", {  # fused qkv and gate_up projections, partial rotary
        **_ROTARY, "num_key_value_heads": 4, "partial_rotary_factor": 0.5, "tie_word_embeddings": False,
    }),
    "mixtral": ("MixtralConfig", {  # 4 experts, top-2 routing
        **_ROTARY, "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2,
        "tie_word_embeddings": False,
    }),
    "qwen2_moe": ("Qwen2MoeConfig", {  # 4 routed experts (top-2) plus a gated shared expert
        **_ROTARY, "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64, "tie_word_embeddings": False,
    }),
    "qwen3_moe": ("Qwen3MoeConfig", {  # 4 experts (top-2), q/k norms
        **_ROTARY, "num_key_value_heads": 2, "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "tie_word_embeddings": False,
    }),
}

FAMILIES: tuple[str, ...] = tuple(_CONFIGS)
"""Families :func:`save_family` builds, by Hugging Face ``model_type``."""


def family_config(family: str) -> Any:
    """The Hugging Face config of the toy ``family`` (a ``transformers.PretrainedConfig``).

    Raises:
        ValueError: ``family`` is not one of :data:`FAMILIES`.

    Examples:
        >>> family_config("mistral").sliding_window
        16
    """
    import transformers

    if family not in _CONFIGS:
        raise ValueError(f"family={family!r}; valid families are {', '.join(FAMILIES)}")
    class_name, kwargs = _CONFIGS[family]
    return getattr(transformers, class_name)(**{**_COMMON, **kwargs})


def save_family(family: str, folder: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Save a seeded random-weight model of ``family`` and the toy tokenizer to ``folder``.

    The files are written to a temporary folder and renamed into place when complete
    (:func:`interp.core.toy_models.save_checkpoint`).

    Args:
        family: One of :data:`FAMILIES`.
        folder: Directory to write ``config.json``, ``model.safetensors`` and tokenizer files to; it must
            not exist or be empty unless ``overwrite``.
        seed: Seed of the weight initialisation.
        overwrite: Replace an existing checkpoint in ``folder``.

    Returns:
        ``folder`` as a ``Path``, loadable with :func:`interp.load`.

    Raises:
        ValueError: ``family`` is not one of :data:`FAMILIES`.
        FileExistsError: ``folder`` is a file or a non-empty folder and ``overwrite`` is False.

    Examples:
        >>> import tempfile, interp
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     interp.model_info(interp.load(save_family("llama", folder), device="cpu")).n_kv_heads
        2
    """
    from transformers import AutoModelForCausalLM

    config = family_config(family)
    check_can_write(folder, overwrite)  # before building the model
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    return save_checkpoint(folder, model, toy_tokenizer(_VOCAB), overwrite=overwrite)
