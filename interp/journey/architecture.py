"""Stage 9, architecture: the model's shape beside the other reference model and a few public models.

A loaded model's shape is its :class:`~interp.core.model_info.ModelInfo` (every field the two share is copied
from it), plus what only this stage shows: the feed-forward kind, the experts of a mixture-of-experts model
and the parameter count. The public models' numbers are static facts from their published ``config.json``
files, typed in here (nothing is downloaded). The reference models are read from their checkpoints'
``config.json`` (no weights are loaded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from interp.core.hooks import moe_layers
from interp.core.model_info import ModelInfo, display_name, model_info
from interp.reference import registry


@dataclass(frozen=True)
class ArchitectureFacts:
    """The shape of one transformer language model."""

    name: str
    """Model name."""
    source: str
    """``"loaded"`` (this model), ``"config.json"`` (a checkpoint on disk) or ``"public"`` (typed-in facts)."""
    n_layers: int
    """Transformer blocks."""
    d_model: int
    """Residual stream width."""
    n_heads: int
    """Query heads per layer."""
    n_kv_heads: int
    """Key/value heads per layer (fewer than ``n_heads``: grouped-query attention)."""
    d_head: int
    """Width of one head."""
    d_mlp: int
    """MLP hidden width (:attr:`ModelInfo.d_mlp`; on a mixture of experts, see :attr:`d_expert`)."""
    d_vocab: int
    """Vocabulary size."""
    n_ctx: int
    """Context length (maximum positions)."""
    norm: str
    """``"layernorm"`` or ``"rmsnorm"``."""
    positional: str
    """``"learned"`` or ``"rotary"``."""
    ffn: str
    """Feed-forward type: ``"GELU MLP"``, ``"ReLU MLP"``, ``"SwiGLU"``, ``"GeGLU"``, or on a mixture of experts
    ``"mixture of experts: 4 experts, top-2, each a SwiGLU of 64"`` (``" + a shared SwiGLU of 64"`` where one
    expert sees every token)."""
    n_params: int | None = None
    """Parameter count, where known (on a mixture of experts, every expert's)."""
    n_experts: int = 0
    """Routed experts per mixture-of-experts block (0: a dense feed-forward)."""
    top_k: int = 0
    """Experts each token is routed to."""
    d_expert: int = 0
    """Hidden width of one routed expert."""
    d_shared_expert: int = 0
    """Hidden width of the shared expert every token also passes through (0: none)."""


FROM_INFO: tuple[str, ...] = tuple(
    f.name for f in fields(ArchitectureFacts) if f.name in {g.name for g in fields(ModelInfo)})
"""The fields a loaded model's facts copy from its :class:`ModelInfo`."""


PUBLIC_MODELS: tuple[ArchitectureFacts, ...] = (
    ArchitectureFacts("gpt2", "public", 12, 768, 12, 12, 64, 3072, 50257, 1024, "layernorm", "learned",
                      "GELU MLP", 124_439_808),
    ArchitectureFacts("EleutherAI/pythia-160m", "public", 12, 768, 12, 12, 64, 3072, 50304, 2048, "layernorm",
                      "rotary", "GELU MLP", 162_322_944),
    ArchitectureFacts("meta-llama/Llama-2-7b-hf", "public", 32, 4096, 32, 32, 128, 11008, 32000, 4096, "rmsnorm",
                      "rotary", "SwiGLU", 6_738_415_616),
    ArchitectureFacts("meta-llama/Meta-Llama-3-8B", "public", 32, 4096, 32, 8, 128, 14336, 128256, 8192, "rmsnorm",
                      "rotary", "SwiGLU", 8_030_261_248),
    ArchitectureFacts("mistralai/Mistral-7B-v0.1", "public", 32, 4096, 32, 8, 128, 14336, 32000, 32768, "rmsnorm",
                      "rotary", "SwiGLU", 7_241_732_096),
    ArchitectureFacts("mistralai/Mixtral-8x7B-v0.1", "public", 32, 4096, 32, 8, 128, 14336, 32000, 32768, "rmsnorm",
                      "rotary", "mixture of experts: 8 experts, top-2, each a SwiGLU of 14336", 46_702_792_704,
                      n_experts=8, top_k=2, d_expert=14336),
)
"""Published shapes of well-known models (pythia-160m rotates 25% of each head; Mistral's 32768 positions
come with a 4096-token sliding attention window; Mixtral's 46.7B parameters are mostly its experts', of
which each token uses two, about 12.9B)."""


def ffn_kind(act_fn: str, gated: bool) -> str:
    """Name a feed-forward by its activation and whether it is gated.

    Examples:
        >>> ffn_kind("silu", True), ffn_kind("gelu_pytorch_tanh", True), ffn_kind("gelu_new", False)
        ('SwiGLU', 'GeGLU', 'GELU MLP')
        >>> ffn_kind("relu", False), ffn_kind("tanh", True)
        ('ReLU MLP', 'gated tanh MLP')
    """
    act = act_fn.lower()
    for prefix, glu, plain in (("silu", "SwiGLU", "SiLU MLP"), ("swish", "SwiGLU", "SiLU MLP"),
                               ("gelu", "GeGLU", "GELU MLP"), ("relu", "ReGLU", "ReLU MLP")):
        if act.startswith(prefix):
            return glu if gated else plain
    return f"gated {act_fn} MLP" if gated else f"{act_fn} MLP"


def describe_ffn(facts: ArchitectureFacts, kind: str) -> str:
    """The ``ffn`` text of a model whose (expert) feed-forward is ``kind``.

    Examples:
        >>> base = PUBLIC_MODELS[0]
        >>> describe_ffn(base, "GELU MLP")
        'GELU MLP'
        >>> from dataclasses import replace
        >>> describe_ffn(replace(base, n_experts=8, top_k=2, d_expert=14336), "SwiGLU")
        'mixture of experts: 8 experts, top-2, each a SwiGLU of 14336'
        >>> describe_ffn(replace(base, n_experts=60, top_k=4, d_expert=1408, d_shared_expert=5632), "SwiGLU")
        'mixture of experts: 60 experts, top-4, each a SwiGLU of 1408 + a shared SwiGLU of 5632'
    """
    if not facts.n_experts:
        return kind
    text = f"mixture of experts: {facts.n_experts} experts, top-{facts.top_k}, each a {kind} of {facts.d_expert}"
    return text + (f" + a shared {kind} of {facts.d_shared_expert}" if facts.d_shared_expert else "")


def _hidden_width(module: Any) -> int:
    """Hidden width of a feed-forward (or of each of a stack of experts): the input width of its down
    projection, whose weight is ``[..., d_model, hidden]`` in every family's Hugging Face code."""
    downs = [p for name, p in module.named_parameters() if "down_proj" in name and p.ndim >= 2]
    if not downs:
        raise ValueError(f"{type(module).__name__} has no down_proj weight to read its hidden width from")
    return int(downs[0].shape[-1])


def facts_from_model(model: Any) -> ArchitectureFacts:
    """Facts of a loaded ``TransformerBridge``: its :func:`model_info`, feed-forward kind, experts and size.

    Raises:
        ValueError: a mixture-of-experts block whose experts' width cannot be read (the message names the
            architecture).
    """
    info = model_info(model)
    facts = ArchitectureFacts(
        source="loaded", ffn="", n_params=int(sum(p.numel() for p in model.original_model.parameters())),
        **{name: getattr(info, name) for name in FROM_INFO},
    )
    moe = moe_layers(model)
    if moe:
        block = model.blocks[moe[0]].mlp.original_component
        shared = getattr(block, "shared_expert", None)
        try:
            d_expert = _hidden_width(block.experts)
            d_shared = _hidden_width(shared) if shared is not None else 0
        except (AttributeError, ValueError) as err:
            raise ValueError(f"{info.arch}: cannot read the width of the experts of block {moe[0]} ({err})") from err
        facts = replace(facts, n_experts=int(model.cfg.num_experts), top_k=int(model.cfg.experts_per_token),
                        d_expert=d_expert, d_shared_expert=d_shared)
    kind = ffn_kind(info.act_fn, bool(getattr(model.cfg, "gated_mlp", False)))
    return replace(facts, ffn=describe_ffn(facts, kind))


def facts_from_config(folder: str | Path, name: str | None = None) -> ArchitectureFacts:
    """Facts read from a GPT-2 or Llama checkpoint's ``config.json``, without loading weights.

    Raises:
        FileNotFoundError: no ``config.json`` in ``folder``.
        ValueError: a ``model_type`` other than ``gpt2`` or ``llama``.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    c = json.loads(path.read_text())
    kind = c.get("model_type")
    label = name or Path(folder).name
    if kind == "gpt2":
        d_model, heads = c["n_embd"], c["n_head"]
        return ArchitectureFacts(label, "config.json", c["n_layer"], d_model, heads, heads, d_model // heads,
                                 c.get("n_inner") or 4 * d_model, c["vocab_size"], c["n_positions"], "layernorm",
                                 "learned", ffn_kind(c.get("activation_function", "gelu_new"), gated=False))
    if kind == "llama":
        d_model, heads = c["hidden_size"], c["num_attention_heads"]
        return ArchitectureFacts(label, "config.json", c["num_hidden_layers"], d_model, heads,
                                 c.get("num_key_value_heads") or heads, c.get("head_dim") or d_model // heads,
                                 c["intermediate_size"], c["vocab_size"], c["max_position_embeddings"], "rmsnorm",
                                 "rotary", ffn_kind(c.get("hidden_act", "silu"), gated=True))
    raise ValueError(f"model_type={kind!r} in {path}; facts_from_config reads 'gpt2' and 'llama'")


@dataclass
class Architecture:
    """Shapes of several models, the loaded one first."""

    models: list[ArchitectureFacts]
    """One entry per model."""

    def to_frame(self) -> Any:
        """One row per model."""
        import pandas as pd

        return pd.DataFrame([asdict(m) for m in self.models])

    def figure(self) -> Any:
        """A table of the models' shapes."""
        import plotly.graph_objects as go

        frame = self.to_frame()
        columns = ["name", "source", "n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_mlp", "d_vocab",
                   "n_ctx", "norm", "positional", "ffn", "n_params"]
        cells = [frame[c].tolist() for c in columns]
        cells[0] = [display_name(n) for n in cells[0]]  # a model's name, not the server folder it was loaded from
        cells[-1] = ["" if v is None or v != v else f"{v / 1e6:,.1f}M" for v in frame["n_params"]]
        # A mixture of experts' description takes a line per part: the experts, then the shared expert.
        ffn = columns.index("ffn")
        cells[ffn] = [text.replace(": ", ":<br>").replace(" + a shared", "<br>+ a shared") for text in cells[ffn]]
        lines = sum(1 + text.count("<br>") for text in cells[ffn])
        widths = [3.2, 1.2] + [1] * (len(columns) - 2)  # the name column holds hub names such as "EleutherAI/..."
        widths[ffn] = 2.6 if lines > len(frame) else 1
        fig = go.Figure(go.Table(columnwidth=widths, header={"values": columns, "height": 28},
                                 cells={"values": cells, "height": 24, "align": ["left"] + ["center"] * 13}))
        fig.update_layout(title="Architecture side by side", height=130 + 28 + 24 * lines,
                          margin={"t": 60, "b": 10, "l": 10, "r": 10})
        return fig


def architecture(model: Any, compare: str | Sequence[Any] = "reference", public: bool = True) -> Architecture:
    """The model's shape beside other models.

    Args:
        model: A ``TransformerBridge``.
        compare: ``"reference"`` for every embedded reference model whose checkpoint is present (read from
            its ``config.json``), or a list of loaded models, checkpoint directories and
            :class:`ArchitectureFacts`.
        public: Append :data:`PUBLIC_MODELS`.

    Examples:
        >>> architecture(model).to_frame()  # doctest: +SKIP
    """
    rows = [facts_from_model(model)]
    if isinstance(compare, str):
        if compare != "reference":
            raise ValueError(f"compare={compare!r}; pass 'reference' or a list of models, directories or facts")
        for name in registry.names():
            try:
                folder = registry.path(name)
            except FileNotFoundError:
                continue
            if Path(rows[0].name).resolve() != folder.resolve():
                rows.append(facts_from_config(folder, name))
    else:
        for other in compare:
            if isinstance(other, ArchitectureFacts):
                rows.append(other)
            elif isinstance(other, (str, Path)):
                rows.append(facts_from_config(other))
            else:
                rows.append(facts_from_model(other))
    return Architecture(models=rows + (list(PUBLIC_MODELS) if public else []))
