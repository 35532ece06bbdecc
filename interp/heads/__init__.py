"""Attention heads: the induction probe, the census of head behaviours, ablations and knocking one head out."""

from interp.heads.ablation import ABLATIONS, head_ablation_losses, joint_ablation_loss, next_token_losses
from interp.heads.census import HeadCensus, head_census
from interp.heads.induction import InductionReport, find_induction_heads, repeated_random_tokens
from interp.heads.knockout import HeadKnockout, knock_out_head

__all__ = [
    "ABLATIONS",
    "HeadCensus",
    "HeadKnockout",
    "InductionReport",
    "find_induction_heads",
    "head_ablation_losses",
    "head_census",
    "joint_ablation_loss",
    "knock_out_head",
    "next_token_losses",
    "repeated_random_tokens",
]
