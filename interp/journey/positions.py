"""Stage 3, positions: learned position embeddings (GPT-2 style) or rotary angles (Llama style).

Learned positions are rows of ``W_pos``; we show how similar each position's vector is to every other.

RoPE rotates dimension pair ``i`` of queries and keys at position ``m`` by the angle ``m * theta_i`` with
``theta_i = base ** (-2i / d_rot)`` (``base`` is the config's ``rope_theta``; Hugging Face pairs
dimension ``i`` with ``i + d_rot / 2``). A query at ``m`` and a key at ``n`` then score
``sum_i |q_i||k_i| cos((m - n) theta_i + phase_i)``: only the offset ``m - n`` matters. The curve shown
is that score for ``q = k =`` all ones, divided by its value at offset 0, i.e. ``mean_i cos(d * theta_i)``,
the usual picture of how RoPE lets attention tell near from far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float

from interp.core.model_info import model_info


@dataclass
class LearnedPositions:
    """Cosine similarities between learned position embeddings."""

    similarity: Float[torch.Tensor, "pos pos"]
    """Cosine similarity of position ``i``'s embedding to position ``j``'s."""
    norms: Float[torch.Tensor, " pos"]
    """Norm of each position's embedding."""

    def to_frame(self) -> Any:
        """One row per position: its norm and its similarity to the next position."""
        import pandas as pd

        n = self.similarity.shape[0]
        nxt = [float(self.similarity[i, i + 1]) if i + 1 < n else float("nan") for i in range(n)]
        return pd.DataFrame({"position": range(n), "norm": self.norms.tolist(), "cos_next": nxt})

    def figure(self) -> Any:
        """Heatmap of position-to-position cosine similarity."""
        import plotly.express as px

        return px.imshow(self.similarity.numpy(), zmin=-1, zmax=1, color_continuous_scale="RdBu_r",
                         labels={"x": "position", "y": "position", "color": "cosine"},
                         title="Learned position embeddings: cosine similarity of every pair of positions",
                         height=560)


@dataclass
class RotaryPositions:
    """Rotation angles of each dimension pair at each position, and the relative-position score curve."""

    base: float
    """``rope_theta`` from the model's config."""
    rotary_dim: int
    """Dimensions of each head that are rotated (``d_head`` unless partial rotary)."""
    inv_freq: Float[torch.Tensor, " pair"]
    """Angle per position step of each dimension pair, ``base ** (-2i / rotary_dim)``."""
    angles: Float[torch.Tensor, "pos pair"]
    """``position * inv_freq`` (radians)."""
    offsets: Float[torch.Tensor, " offset"]
    """Query-minus-key offsets of :attr:`relative_score`."""
    relative_score: Float[torch.Tensor, " offset"]
    """``mean_i cos(offset * inv_freq_i)``: the score of ``q = k =`` ones at that offset, over offset 0."""

    def to_frame(self) -> Any:
        """One row per offset: the relative score."""
        import pandas as pd

        return pd.DataFrame({"offset": self.offsets.tolist(), "score": self.relative_score.tolist()})

    def figure(self) -> Any:
        """Left: cos(angle) per position and dimension pair; right: the relative-position score curve."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, subplot_titles=("cos(position × θ_i)", "score vs query−key offset"))
        fig.add_trace(go.Heatmap(z=self.angles.cos().numpy(), zmin=-1, zmax=1, colorscale="RdBu_r",
                                 colorbar={"x": 0.45, "title": {"text": "cos(angle)"}},
                                 hovertemplate="position %{y}<br>pair %{x}<br>cos %{z:.3f}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=self.offsets.tolist(), y=self.relative_score.tolist(), mode="lines"),
                      row=1, col=2)
        fig.update_xaxes(title_text="dimension pair i", row=1, col=1)
        fig.update_yaxes(title_text="position", row=1, col=1)
        fig.update_xaxes(title_text="offset m − n", row=1, col=2)
        fig.update_layout(title=f"RoPE (base {self.base:g}, {self.rotary_dim} rotated dims per head)",
                          showlegend=False)
        return fig


def positions(model: Any, n_positions: int | None = None) -> LearnedPositions | RotaryPositions:
    """How the model encodes position: learned-embedding similarities or RoPE angles.

    Args:
        model: A ``TransformerBridge``.
        n_positions: Positions to show (default and maximum: the model's ``n_ctx``).

    Returns:
        :class:`LearnedPositions` for absolute learned positions, :class:`RotaryPositions` for RoPE.

    Raises:
        ValueError: ``n_positions`` out of range, a RoPE scaling type other than the default, or a
            positional scheme that is neither.

    Examples:
        >>> positions(model).figure()  # doctest: +SKIP
    """
    info = model_info(model)
    n = info.n_ctx if n_positions is None else n_positions
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= info.n_ctx:
        raise ValueError(f"n_positions={n_positions!r}, model has positions 1..{info.n_ctx}")
    if info.positional == "learned":
        w_pos = model.W_pos.detach().float()[:n]
        unit = F.normalize(w_pos, dim=-1)
        return LearnedPositions(similarity=unit @ unit.T, norms=w_pos.norm(dim=-1))
    if info.positional == "rotary":
        base, rotary_dim = rope_parameters(model)
        inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
        angles = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq
        offsets = torch.arange(n, dtype=torch.float64)
        score = torch.cos(offsets[:, None] * inv_freq).mean(-1)
        return RotaryPositions(base=base, rotary_dim=rotary_dim, inv_freq=inv_freq.float(), angles=angles.float(),
                               offsets=offsets.float(), relative_score=score.float())
    raise ValueError(f"positional={info.positional!r}; the positions stage knows 'learned' and 'rotary'")


def rope_parameters(model: Any) -> tuple[float, int]:
    """``(rope_theta, rotary_dim)`` from the Hugging Face config of a RoPE model.

    Raises:
        ValueError: the config asks for a scaled RoPE variant (``rope_type`` other than ``"default"``).
    """
    config = model.original_model.config
    params = dict(getattr(config, "rope_parameters", None) or {})
    base = params.get("rope_theta", getattr(config, "rope_theta", None))
    if base is None:
        base = float(model.cfg.rotary_base)
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise ValueError(f"rope_type={rope_type!r}; the positions stage shows plain RoPE ('default') only")
    d_head = int(getattr(config, "head_dim", None) or model.cfg.d_head)
    if getattr(config, "rotary_dim", None):  # GPT-J and CodeGen name the rotated width directly
        return float(base), int(config.rotary_dim)
    factor = params.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0
    return float(base), int(d_head * factor)


def apply_rope(
    x: Float[torch.Tensor, "pos head d_head"], model: Any
) -> Float[torch.Tensor, "pos head d_head"]:
    """Rotate queries or keys at positions ``0..pos-1`` the way ``model`` does, for bridges that expose
    only the unrotated vectors.

    The first ``rotary_dim`` dimensions of each head are rotated (the rest pass through, partial rotary);
    GPT-J and CodeGen pair neighbouring dimensions ``(2i, 2i + 1)``, every other family pairs ``i`` with
    ``i + rotary_dim / 2`` (Hugging Face's ``rotate_half``).

    Raises:
        ValueError: a scaled RoPE variant (see :func:`rope_parameters`).
    """
    base, rotary_dim = rope_parameters(model)
    inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    angles = torch.arange(x.shape[0], dtype=torch.float64)[:, None] * inv_freq  # [pos pair]
    rot, rest = x[..., :rotary_dim].double(), x[..., rotary_dim:]
    interleaved = model.original_model.config.model_type in ("gptj", "codegen")
    if interleaved:
        cos, sin = angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1)
        pairs = rot.unflatten(-1, (-1, 2))
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    else:
        cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
        half = rotary_dim // 2
        turned = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    rotated = rot * cos[:, None] + turned * sin[:, None]
    return torch.cat([rotated.to(x.dtype), rest], dim=-1)
