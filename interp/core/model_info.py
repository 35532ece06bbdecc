"""The shape facts of a loaded model, and the index checks every analysis shares."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.core import embedded

_NORMS = {"LN": "layernorm", "LNPre": "layernorm", "RMS": "rmsnorm", "RMSPre": "rmsnorm"}
_POSITIONALS = {"standard": "learned", "rotary": "rotary"}


@dataclass(frozen=True)
class ModelInfo:
    """Architecture facts of a model, read from its TransformerLens config."""

    name: str
    """What the model was loaded from: the checkpoint directory or the hub name."""
    arch: str
    """Hugging Face ``model_type``, e.g. ``"gpt2"`` or ``"llama"``."""
    n_layers: int
    """Number of transformer blocks."""
    n_heads: int
    """Query heads per attention layer."""
    n_kv_heads: int
    """Key/value heads per attention layer (``< n_heads`` for grouped-query attention)."""
    d_model: int
    """Width of the residual stream."""
    d_head: int
    """Width of one attention head."""
    d_mlp: int
    """Number of MLP neurons per layer; on a mixture of experts, the hidden width of one routed expert (Hugging Face
    ``moe_intermediate_size`` where the config has one, as Qwen-MoE's do, else ``intermediate_size``, as
    Mixtral's). On a stack that interleaves dense and expert blocks, the expert blocks' width."""
    d_vocab: int
    """Rows of the embedding matrix: valid token ids are ``0..d_vocab-1``."""
    n_ctx: int
    """Longest sequence the model accepts, in tokens."""
    norm: str
    """``"layernorm"`` or ``"rmsnorm"`` (TransformerLens' raw name for anything else)."""
    positional: str
    """``"learned"`` (absolute position embeddings) or ``"rotary"`` (RoPE)."""
    act_fn: str
    """MLP activation, e.g. ``"gelu_new"`` or ``"silu"``."""
    prepend_bos: bool
    """Whether :func:`interp.tokenize` puts the BOS token in front of text prompts."""
    device: str
    """Device of the embedding (where input tokens must go)."""
    final_softcap: float | None = None
    """Final logit soft-cap (Gemma 2): the model outputs ``cap * tanh(logit / cap)`` after its unembedding."""
    n_experts: int = 0
    """Routed experts per mixture-of-experts block (0: a dense feed-forward)."""
    top_k: int = 0
    """Experts each token is routed to (0: a dense feed-forward)."""
    d_shared_expert: int = 0
    """Hidden width of the shared expert every token also passes through (Qwen2-MoE's
    ``shared_expert_intermediate_size``; 0: none)."""

    @property
    def is_moe(self) -> bool:
        """True when the feed-forward is a mixture of experts (and :attr:`d_mlp` is one expert's width)."""
        return self.n_experts > 0

    @property
    def is_gqa(self) -> bool:
        """True when keys and values have fewer heads than queries."""
        return self.n_kv_heads < self.n_heads

    @property
    def display_name(self) -> str:
        """The model's name for titles and messages, never a server path (see :func:`display_name`)."""
        return display_name(self.name)


def display_name(name: str) -> str:
    """Name a model by its name rather than by where it lies on disk.

    An embedded model (or a folder under the embedded checkpoints) is its embedded name, a local folder
    is its last path component, and anything else (a hub name such as ``"org/model"``) is kept as given.

    Examples:
        >>> display_name("ref-gpt2"), display_name(str(embedded.CHECKPOINTS / "ref-llama"))
        ('ref-gpt2', 'ref-llama')
        >>> display_name("/srv/models/my-gpt/"), display_name("EleutherAI/pythia-70m")
        ('my-gpt', 'EleutherAI/pythia-70m')
    """
    name = str(name)
    if name in embedded.KNOWN:
        return name
    # Same test as interp.load's: hub ids are "name" or "org/name"; anything path-like is local.
    local = name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
    if not local:
        return name
    path = Path(os.path.normpath(os.path.expanduser(name)))
    return path.name or name


def model_info(model: Any) -> ModelInfo:
    """Read the architecture facts of a loaded model.

    Args:
        model: A ``TransformerBridge`` (as returned by :func:`interp.load`).

    Returns:
        The model's :class:`ModelInfo`.

    Examples:
        >>> from interp.core.toy_models import ToyConfig, load_toy
        >>> info = model_info(load_toy(ToyConfig(arch="llama", n_kv_heads=2)))
        >>> info.arch, info.n_layers, info.n_heads, info.n_kv_heads, info.norm, info.positional
        ('llama', 2, 4, 2, 'rmsnorm', 'rotary')
        >>> info.is_moe, info.n_experts, info.d_shared_expert
        (False, 0, 0)
    """
    cfg = model.cfg
    hf_config = getattr(getattr(model, "original_model", None), "config", None)
    arch = getattr(hf_config, "model_type", None) or str(cfg.architecture).lower()
    n_kv_heads = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    n_experts = int(getattr(cfg, "num_experts", None) or 0)
    d_mlp = int(cfg.d_mlp)
    if n_experts:
        # TransformerLens' d_mlp is the config's intermediate_size: the experts' width on Mixtral, but the
        # (unused or dense-layer) MLP width on Qwen-MoE, whose experts are moe_intermediate_size wide.
        d_mlp = int(getattr(hf_config, "moe_intermediate_size", None) or d_mlp)
    return ModelInfo(
        name=str(cfg.model_name),
        arch=arch,
        n_layers=int(cfg.n_layers),
        n_heads=int(cfg.n_heads),
        n_kv_heads=int(n_kv_heads),
        d_model=int(cfg.d_model),
        d_head=int(cfg.d_head),
        d_mlp=d_mlp,
        d_vocab=int(cfg.d_vocab),
        n_ctx=int(cfg.n_ctx),
        norm=_NORMS.get(cfg.normalization_type, str(cfg.normalization_type)),
        positional=_POSITIONALS.get(cfg.positional_embedding_type, str(cfg.positional_embedding_type)),
        act_fn=str(cfg.act_fn),
        prepend_bos=bool(cfg.default_prepend_bos),
        device=str(cfg.device),
        final_softcap=float(cap) if (cap := getattr(hf_config, "final_logit_softcapping", None)) else None,
        n_experts=n_experts,
        top_k=int(getattr(cfg, "experts_per_token", None) or 0) if n_experts else 0,
        d_shared_expert=int(getattr(hf_config, "shared_expert_intermediate_size", None) or 0) if n_experts else 0,
    )


def check_layer(info: ModelInfo, layer: int) -> int:
    """Return ``layer`` if it names a block of the model.

    Raises:
        ValueError: ``layer`` is not an int in ``0..n_layers-1``.

    Examples:
        >>> info = ModelInfo("m", "gpt2", 4, 4, 4, 32, 8, 128, 300, 32, "layernorm", "learned", "gelu", True, "cpu")
        >>> check_layer(info, 3)
        3
        >>> check_layer(info, 7)
        Traceback (most recent call last):
        ...
        ValueError: layer=7, model has layers 0..3
    """
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < info.n_layers:
        raise ValueError(f"layer={layer!r}, model has layers 0..{info.n_layers - 1}")
    return layer


def check_head(info: ModelInfo, head: int, *, kv: bool = False) -> int:
    """Return ``head`` if it names a query head (or a key/value head when ``kv``).

    Raises:
        ValueError: ``head`` is not an int in ``0..n_heads-1`` (``0..n_kv_heads-1`` when ``kv``).

    Examples:
        >>> info = ModelInfo("m", "llama", 2, 4, 2, 32, 8, 64, 300, 64, "rmsnorm", "rotary", "silu", True, "cpu")
        >>> check_head(info, 3)
        3
        >>> check_head(info, 3, kv=True)
        Traceback (most recent call last):
        ...
        ValueError: head=3, model has key/value heads 0..1
    """
    count, kind = (info.n_kv_heads, "key/value heads") if kv else (info.n_heads, "heads")
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < count:
        raise ValueError(f"head={head!r}, model has {kind} 0..{count - 1}")
    return head
