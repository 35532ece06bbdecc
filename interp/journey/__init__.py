"""The token's journey through a transformer, one stage at a time, each with a result that draws itself."""

from interp.journey.all_stages import Journey, run
from interp.journey.architecture import PUBLIC_MODELS, Architecture, ArchitectureFacts, architecture
from interp.journey.attention import AttentionHead, AttentionHeads, attention_head, attention_heads
from interp.journey.embeddings import AnalogyScore, Neighbours, analogy, analogy_accuracy, nearest_tokens
from interp.journey.experts import ExpertRouting, expert_outputs, expert_routing
from interp.journey.ffn import TopNeurons, feed_forward, top_neurons
from interp.journey.positions import LearnedPositions, RotaryPositions, positions
from interp.journey.residual import ResidualStream, residual_stream
from interp.journey.tokens import TokenStage, WordMerges, token_merges

__all__ = [
    "AnalogyScore",
    "Architecture",
    "ArchitectureFacts",
    "AttentionHead",
    "AttentionHeads",
    "ExpertRouting",
    "Journey",
    "LearnedPositions",
    "Neighbours",
    "PUBLIC_MODELS",
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
    "expert_outputs",
    "expert_routing",
    "feed_forward",
    "nearest_tokens",
    "positions",
    "residual_stream",
    "run",
    "token_merges",
    "top_neurons",
]
