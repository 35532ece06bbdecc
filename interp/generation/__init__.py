"""Turning logits into text: the sampling pipeline, next-token views, generation and speculative decoding."""

from interp.generation.decoding import Generation, NextToken, generate, next_token, next_token_from_logits
from interp.generation.sampling import (
    STEPS,
    StepEffect,
    check_sampling,
    make_generator,
    pipeline,
    sample,
    sampling_probs,
    step_effects,
)
from interp.generation.speculative import Round, SpeculativeGeneration, speculative_generate, verify

__all__ = [
    "Generation",
    "NextToken",
    "Round",
    "STEPS",
    "SpeculativeGeneration",
    "StepEffect",
    "check_sampling",
    "generate",
    "make_generator",
    "next_token",
    "next_token_from_logits",
    "pipeline",
    "sample",
    "sampling_probs",
    "speculative_generate",
    "step_effects",
    "verify",
]
