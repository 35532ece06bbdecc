"""All nine stages of the token's journey from one capture, for the dashboard.

1. :func:`~interp.journey.token_merges` 2. :func:`~interp.journey.nearest_tokens`,
:func:`~interp.journey.analogy` 3. :func:`~interp.journey.positions` 4. :func:`~interp.journey.attention_head`
5. :func:`~interp.journey.attention_heads` 6. :func:`~interp.journey.top_neurons`
7. :func:`~interp.journey.residual_stream` 8. :func:`interp.next_token` 9. :func:`~interp.journey.architecture`;
:func:`run` computes them all from one capture.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from interp.core.capturing import capture
from interp.core.locking import holds_model
from interp.core.model_info import check_layer, model_info
from interp.core.tokens import Prompts
from interp.generation import NextToken, next_token_from_logits
from interp.journey.architecture import Architecture, architecture
from interp.journey.attention import (
    AttentionHead,
    AttentionHeads,
    attention_head,
    attention_heads,
    attention_names,
)
from interp.journey.common import check_position
from interp.journey.embeddings import Neighbours, Token, analogy, nearest_tokens
from interp.journey.experts import ExpertRouting
from interp.journey.ffn import TopNeurons, feed_forward, ffn_names
from interp.journey.positions import LearnedPositions, RotaryPositions, positions
from interp.journey.residual import ResidualStream, residual_names, residual_stream
from interp.journey.tokens import TokenStage, token_merges


@dataclass
class Journey:
    """The nine stages for one prompt."""

    tokens: TokenStage
    """1. Token ids and BPE merges."""
    embeddings: Neighbours
    """2. Nearest neighbours of the embedding of the token at ``position``."""
    analogy: Neighbours | None
    """2. Analogy answers, when an analogy was asked for."""
    positions: LearnedPositions | RotaryPositions
    """3. Position similarities or RoPE angles."""
    attention: AttentionHead
    """4. One head step by step."""
    heads: AttentionHeads
    """5. All heads of the layer."""
    ffn: TopNeurons | ExpertRouting
    """6. Top neurons of the layer at ``position`` (on a mixture-of-experts layer: the router's choices)."""
    residual: ResidualStream
    """7. Residual norms and direct logit attribution."""
    output: NextToken
    """8. Logits to probabilities."""
    architecture: Architecture
    """9. Shapes side by side."""

    def figures(self) -> dict[str, Any]:
        """Every stage's figure by stage name (``analogy`` only when computed)."""
        return {f.name: getattr(self, f.name).figure() for f in fields(self) if getattr(self, f.name) is not None}


@holds_model
def run(
    model: Any,
    prompt: Prompts,
    *,
    layer: int = 0,
    head: int = 0,
    query: int = -1,
    position: int = -1,
    token: Token | None = None,
    analogy_words: tuple[Token, Token, Token] | None = None,
    temperature: float | int = 1.0,
    top_k: int | None = None,
    top_p: float | int | None = None,
    compare: Any = "reference",
    k: int = 10,
) -> Journey:
    """Compute all nine stages of the journey with a single forward pass.

    Args:
        model: A ``TransformerBridge``.
        prompt: One text prompt.
        layer: Layer of the attention, multi-head and FFN stages.
        head: Head of the attention stage.
        query: Query position of the attention stage's value mix.
        position: Position of the embeddings, FFN and residual stages (default: the last).
        token: Token whose logit the residual stage attributes (default: the top prediction).
        analogy_words: ``(a, b, c)`` for ``a - b + c`` (e.g. ``("king", "man", "woman")``), or None.
        temperature: Output stage temperature.
        top_k: Output stage top-k.
        top_p: Output stage top-p.
        compare: What the architecture stage compares with (see :func:`interp.journey.architecture`).
        k: How many neighbours, neurons and answers to keep.

    Examples:
        >>> journey = run(model, "The Eiffel Tower is in the city of", layer=1, head=2)  # doctest: +SKIP
        >>> journey.figures()["residual"].show()  # doctest: +SKIP
    """
    check_layer(model_info(model), layer)
    names = [*attention_names(model, layer), *ffn_names(model, layer), *residual_names(model)]
    cap = capture(model, prompt, names=list(dict.fromkeys(names)))
    stage_tokens = token_merges(model, prompt, cap=cap)
    position = check_position(position, cap.tokens.shape[1])
    residual = residual_stream(model, position=position, token=token, cap=cap)
    return Journey(
        tokens=stage_tokens,
        embeddings=nearest_tokens(model, int(cap.tokens[0, position]), k=k),
        analogy=analogy(model, *analogy_words, k=k) if analogy_words else None,
        positions=positions(model),
        attention=attention_head(model, layer=layer, head=head, query=query, cap=cap),
        heads=attention_heads(model, layer=layer, cap=cap),
        ffn=feed_forward(model, layer=layer, position=position, k=k, cap=cap),
        residual=residual,
        output=next_token_from_logits(cap.tokens[0], cap.logits[0, residual.position], model.tokenizer,
                                      temperature, top_k, top_p),
        architecture=architecture(model, compare),
    )
