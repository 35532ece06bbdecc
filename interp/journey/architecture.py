"""Stage 9, architecture: the model's shape beside the other reference model and a few public models.

The public models' numbers are static facts from their published ``config.json`` files, typed in here
(nothing is downloaded). The reference models are read from their checkpoints' ``config.json``
(no weights are loaded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from interp.core.model_info import display_name, model_info
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
    """MLP hidden width."""
    d_vocab: int
    """Vocabulary size."""
    n_ctx: int
    """Context length (maximum positions)."""
    norm: str
    """``"layernorm"`` or ``"rmsnorm"``."""
    positional: str
    """``"learned"`` or ``"rotary"``."""
    ffn: str
    """Feed-forward type: ``"GELU MLP"`` or ``"SwiGLU"``."""
    n_params: int | None = None
    """Parameter count, where known."""


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
)
"""Published shapes of well-known models (pythia-160m rotates 25% of each head; Mistral's 32768 positions
come with a 4096-token sliding attention window)."""


def facts_from_model(model: Any) -> ArchitectureFacts:
    """Facts of a loaded ``TransformerBridge``."""
    info = model_info(model)
    n_params = sum(p.numel() for p in model.original_model.parameters())
    return ArchitectureFacts(
        name=info.name, source="loaded", n_layers=info.n_layers, d_model=info.d_model, n_heads=info.n_heads,
        n_kv_heads=info.n_kv_heads, d_head=info.d_head, d_mlp=info.d_mlp, d_vocab=info.d_vocab, n_ctx=info.n_ctx,
        norm=info.norm, positional=info.positional,
        ffn="SwiGLU" if getattr(model.cfg, "gated_mlp", False) else "GELU MLP", n_params=int(n_params),
    )


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
                                 "learned", "GELU MLP")
    if kind == "llama":
        d_model, heads = c["hidden_size"], c["num_attention_heads"]
        return ArchitectureFacts(label, "config.json", c["num_hidden_layers"], d_model, heads,
                                 c.get("num_key_value_heads") or heads, c.get("head_dim") or d_model // heads,
                                 c["intermediate_size"], c["vocab_size"], c["max_position_embeddings"], "rmsnorm",
                                 "rotary", "SwiGLU")
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
        widths = [3.2, 1.2] + [1] * (len(columns) - 2)  # the name column holds hub names such as "EleutherAI/..."
        fig = go.Figure(go.Table(columnwidth=widths, header={"values": columns, "height": 28},
                                 cells={"values": cells, "height": 24, "align": ["left"] + ["center"] * 13}))
        fig.update_layout(title="Architecture side by side", height=130 + 28 + 24 * len(frame),
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
