"""The token's journey through a transformer, one stage at a time, each with a result that draws itself.

1. :func:`token_merges` 2. :func:`nearest_tokens`, :func:`analogy` 3. :func:`positions`
4. :func:`attention_head` 5. :func:`attention_heads` 6. :func:`top_neurons` 7. :func:`residual_stream`
8. :func:`interp.next_token` 9. :func:`architecture`; :func:`run` computes them all from one capture.
"""

from interp.journey.architecture import PUBLIC_MODELS, Architecture, ArchitectureFacts, architecture
from interp.journey.attention import AttentionHead, AttentionHeads, attention_head, attention_heads
from interp.journey.embeddings import AnalogyScore, Neighbours, analogy, analogy_accuracy, nearest_tokens
from interp.journey.ffn import TopNeurons, top_neurons
from interp.journey.positions import LearnedPositions, RotaryPositions, positions
from interp.journey.residual import ResidualStream, residual_stream
from interp.journey.all_stages import Journey, run
from interp.journey.tokens import TokenStage, WordMerges, token_merges

__all__ = [
    "PUBLIC_MODELS",
    "AnalogyScore",
    "Architecture",
    "ArchitectureFacts",
    "AttentionHead",
    "AttentionHeads",
    "Journey",
    "LearnedPositions",
    "Neighbours",
    "ResidualStream",
    "RotaryPositions",
    "TokenStage",
    "TopNeurons",
    "WordMerges",
    "analogy",
    "analogy_accuracy",
    "architecture",
    "attention_head",
    "attention_heads",
    "nearest_tokens",
    "positions",
    "residual_stream",
    "run",
    "token_merges",
]
