"""ROME's defaults sized for the model (issue #21): fewer steps, prefixes, trace samples and profile facts for larger
models, the reference models' tuned defaults kept exactly, and progress bars on the long phases.

Larger models are emulated on the tiny ones by replacing the per-token cost estimate (and the layer count), which is
all the sizing reads; the budgets' arithmetic is checked against the documented table and against the budget.
"""

from __future__ import annotations

import types

import pytest
import torch

import interp
from interp import rome
from interp.heads import sizing as heads_sizing
from interp.rome import layers, sizing

PROMPT, SUBJECT = "{} is located in the city of", "The Eiffel Tower"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """ROME's caches go to a temporary folder, never to the user's."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def references():
    return {name: interp.load(name) for name in ("ref-gpt2", "ref-llama")}


def emulate(monkeypatch, flops_per_token: float, n_layers: int) -> None:
    """Make every model look like one costing ``flops_per_token`` a token, with ``n_layers`` blocks."""
    monkeypatch.setattr(heads_sizing, "token_flops", lambda model: flops_per_token)
    monkeypatch.setattr(sizing, "model_info", lambda model: types.SimpleNamespace(n_layers=n_layers))


@pytest.mark.parametrize(("flops", "n_layers", "steps", "n_prefixes", "samples"), [
    (7.9e6, 6, 100, 10, 10),  # ref-gpt2
    (0.29e9, 12, 39, 10, 10),  # GPT-2 small
    (2.47e9, 16, 20, 5, 3),  # Llama 3.2 1B
    (15.0e9, 32, 20, 5, 3),  # Llama 3.1 8B
])
def test_documented_table(tiny_gpt2, monkeypatch, flops, n_layers, steps, n_prefixes, samples):
    emulate(monkeypatch, flops, n_layers)
    config = rome.RomeConfig().sized(tiny_gpt2)
    assert (config.steps, config.n_prefixes) == (steps, n_prefixes)
    assert sizing.trace_samples(tiny_gpt2, 12) == samples


def test_bigger_models_get_smaller_defaults_within_the_budget(tiny_gpt2, monkeypatch):
    plans = []
    for flops in [10.0**k for k in range(6, 12)] + [3e8, 3e9, 1.5e10]:
        emulate(monkeypatch, flops, 12)
        config = rome.RomeConfig().sized(tiny_gpt2)
        plans.append((flops, config.steps, config.n_prefixes, sizing.trace_samples(tiny_gpt2, 12)))
        # Above the floors the optimisation's estimated cost stays within its budget.
        row = config.prefix_tokens + sizing.NOMINAL_PROMPT_TOKENS
        cost = config.steps * (config.n_prefixes + 2) * row * sizing.FORWARD_BACKWARD * flops
        floors = (config.steps, config.n_prefixes) == (sizing.STEPS[0], sizing.PREFIXES[0])
        assert floors or cost <= sizing.VALUE_FLOPS
        trace = 12 * (plans[-1][3] + 1) * 12 * flops
        assert plans[-1][3] == sizing.TRACE_SAMPLES[0] or trace <= sizing.TRACE_FLOPS
    plans.sort()
    for (_, *smaller), (_, *larger) in zip(plans, plans[1:], strict=False):  # consecutive pairs
        assert all(b <= a for a, b in zip(smaller, larger, strict=True)), (smaller, larger)
    assert plans[0][1:] == (100, 10, 10) and plans[-1][1:] == (20, 5, 3)


def test_given_values_are_kept(tiny_gpt2, monkeypatch):
    emulate(monkeypatch, 15e9, 32)
    assert rome.RomeConfig(steps=7, n_prefixes=3).sized(tiny_gpt2) == rome.RomeConfig(steps=7, n_prefixes=3)
    assert rome.RomeConfig(steps=100).sized(tiny_gpt2).n_prefixes == sizing.PREFIXES[0]
    assert sizing.value_plan(10**9, 8, steps=5) == (5, 10)
    assert sizing.value_plan(0, 8, n_prefixes=2) == (20, 2)


def test_reference_models_keep_their_tuned_defaults(references, monkeypatch):
    for model in references.values():
        assert rome.RomeConfig().sized(model) == rome.RomeConfig(steps=100, n_prefixes=10)
        seen = []
        monkeypatch.setattr(layers, "trace_state", lambda *a, samples, seen=seen, **k: seen.append(samples) or 0.5)
        rome.traced_scores(model, PROMPT, SUBJECT, progress=False)
        assert seen == [10] * interp.model_info(model).n_layers
        facts = []
        monkeypatch.setattr(layers, "average_indirect_effect", lambda m, prompts, *, facts=facts, model=model, **k:
                            facts.append((prompts, k)) or torch.zeros(interp.model_info(model).n_layers))
        layers.layer_profile(model, progress=False)
        assert len(facts) == 20 and all(k["samples"] == 5 and len(p) == 1 for p, k in facts)
        assert (rome.keys.cache_dir() / f"{rome.fingerprint(model)[:16]}-layer-profile-20-5-0.json").is_file()


def test_sized_trace_is_cached_under_its_sample_count(tiny_gpt2, monkeypatch):
    n_layers = interp.model_info(tiny_gpt2).n_layers
    n_tokens = len(interp.tokenize(tiny_gpt2, PROMPT.replace("{}", SUBJECT)).tokens[0])
    # Room for n_layers x 6 rows of the prompt: 5 noise samples and the clean run.
    monkeypatch.setattr(sizing, "TRACE_FLOPS", heads_sizing.token_flops(tiny_gpt2) * (n_layers * 6 * n_tokens + 0.5))
    expected = 5
    assert sizing.trace_samples(tiny_gpt2, n_tokens) == expected
    sized_scores = rome.traced_scores(tiny_gpt2, PROMPT, SUBJECT, progress=False)
    monkeypatch.setattr(layers, "trace_state", lambda *a, **k: pytest.fail("recomputed"))
    assert torch.equal(rome.traced_scores(tiny_gpt2, PROMPT, SUBJECT, samples=expected), sized_scores)


def test_edit_runs_the_sized_config_with_progress_bars(tiny_gpt2_dir, monkeypatch, capsys):
    model = interp.load(tiny_gpt2_dir, device="cpu")  # a private copy: the edit changes weights
    emulate(monkeypatch, 15e9, 2)
    config = rome.RomeConfig(prefix_tokens=4, stats_samples=0, early_stop=0.0)
    assert len(rome.prefixes(model, config)) == sizing.PREFIXES[0]
    capsys.readouterr()
    rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=" Rome", layer=0, config=config).undo()
    err = capsys.readouterr().err
    assert "ROME value, layer 0" in err and f"/{sizing.STEPS[0]}" in err
    quick = rome.RomeConfig(prefix_tokens=4, stats_samples=0, steps=1)
    rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=" Rome", layer=0, config=quick, progress=False).undo()
    assert "ROME value" not in capsys.readouterr().err


def test_solve_adds_the_ridge_in_place_with_the_same_bits(tiny_gpt2):
    config = rome.RomeConfig(stats_samples=16, stats_ridge=1e-3)
    mom2 = rome.key_stats(tiny_gpt2, 0, 16, progress=False).double()
    key = torch.randn(mom2.shape[0], generator=torch.Generator().manual_seed(0))
    eye = torch.eye(mom2.shape[0], dtype=torch.float64)
    expected = torch.linalg.solve(mom2 + 1e-3 * mom2.diagonal().mean() * eye, key.double()).float()
    assert torch.equal(rome.solve_stats(tiny_gpt2, 0, key, config, progress=False), expected)
