"""Slow checks on the shipped reference models: the two-layer induction circuit and the shipped tuned lenses.

Nothing here names a head: the detectors find them, and the tests check the claims each CARD.md makes.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.reference.world_text import world_tokens

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["ref-gpt2", "ref-llama"])
def ref_model(request):
    model = interp.load(request.param, device="cpu")
    # ref-llama's config allows 128 positions (max_position_embeddings) but it was trained on 64.
    model.cfg.n_ctx = min(model.cfg.n_ctx, 64)
    return model


def test_induction_circuit(ref_model):
    report = interp.find_induction_heads(ref_model)
    strong = report.heads(0.5)
    assert strong, "no head with induction score > 0.5"
    assert all(report.copying[layer, head] > 0 for layer, head in strong)
    assert report.joint_ablation > 0.5
    census = interp.head_census(ref_model, importance=False)
    previous = [layer for (layer, _), label in census.labels.items() if label.startswith("previous_token")]
    assert previous and min(previous) < min(layer for layer, _ in strong)


def test_shipped_tuned_lens_beats_logit_lens_on_held_out_text(ref_model):
    lens = interp.TunedLens.load_for(ref_model)
    held_out = world_tokens(ref_model, 32, seed=4242)
    tuned = lens.apply(ref_model, held_out).kl_to_final()
    logit = interp.logit_lens(ref_model, held_out).kl_to_final()
    assert (tuned[:-1] < logit[:-1]).all()
    torch.testing.assert_close(tuned[-1], torch.tensor(0.0), atol=1e-5, rtol=0)
