"""interp.features: SAEs through sparsify, the "sae:<site>" capture, splicing, concept F1, steering, CLI and page.

A tiny SAE is trained once per module on a copy of the tiny GPT-2 (the shared fixture is never touched) and saved
beside that copy's checkpoint, the way the reference SAEs are shipped.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import interp
from interp import features
from interp.core.hooks import hook_name
from interp.reference.lexicon import NAMES, NOUNS

APPS = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture(scope="module")
def sae_model_dir(tiny_gpt2_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("features") / "tiny-gpt2-sae"
    shutil.copytree(tiny_gpt2_dir, folder)
    model = interp.load(folder, device="cpu")
    site = hook_name("resid_post", 1)
    acts = features.site_activations(model, site, 1500, seed=0)
    sae, log = features.train_sae(acts, site, num_latents=64, k=4, steps=30, batch_size=256, progress=False)
    assert log.steps == 30 and len(log.fvu) == 10
    sae.save(features.sae_folder(model))
    return folder


@pytest.fixture(scope="module")
def sae_model(sae_model_dir):
    return interp.load(sae_model_dir, device="cpu")


def test_sae_capture_equals_sparse_coder_encode(sae_model):
    sae = features.load_sae(sae_model)
    name = f"sae:{sae.site}"
    cap = interp.capture(sae_model, ["The cat sat on the mat", "Paris"], [name, sae.site])
    x = cap[sae.site]
    top_acts, top_indices, _ = sae.coder.encode(x.reshape(-1, x.shape[-1]))
    expected = torch.zeros(x.shape[0] * x.shape[1], sae.num_latents)
    for row in range(len(expected)):
        for value, index in zip(top_acts[row].tolist(), top_indices[row].tolist(), strict=True):
            expected[row, index] = value
    latents = cap[name]
    assert latents.shape == (*x.shape[:2], sae.num_latents)
    torch.testing.assert_close(latents.reshape(-1, sae.num_latents), expected, atol=0, rtol=0)
    assert int((latents > 0).sum(-1).max()) <= sae.k
    alone = interp.capture(sae_model, "Paris", [name])
    assert alone.hook_names == [name]  # the base hook was not asked for, so it is not kept


def test_unknown_sae_site_is_refused(sae_model):
    with pytest.raises(ValueError, match="neither an alias"):
        interp.capture(sae_model, "Paris", ["sae:" + hook_name("resid_post", 0)])
    with pytest.raises(ValueError, match="features 0..63"):
        features.load_sae(sae_model).decoder_direction(64)


def _perfect_sae(site: str, d: int) -> features.SparseAutoencoder:
    # Latents +x_i and -x_i with k = d: TopK keeps exactly the positive one of each pair, the decoder maps it back.
    coder = features.sae.new_coder(d, 2 * d, d)
    eye = torch.eye(d)
    with torch.no_grad():
        coder.encoder.weight.copy_(torch.cat([eye, -eye]))
        coder.encoder.bias.zero_()
        coder.W_dec.copy_(torch.cat([eye, -eye]))
        coder.b_dec.zero_()
    return features.SparseAutoencoder(site=site, coder=coder)


def test_splice_identity_and_a_perfect_sae_change_no_loss(tiny_gpt2):
    site = hook_name("resid_post", 0)
    tokens = torch.randint(1, 300, (4, 20), generator=torch.Generator().manual_seed(0))
    clean = features.spliced_loss(tiny_gpt2, tokens, site, None)
    assert features.spliced_loss(tiny_gpt2, tokens, site, lambda x: x) == clean
    perfect = _perfect_sae(site, 32)
    x = torch.randn(10, 32)
    torch.testing.assert_close(perfect.reconstruct(x), x, atol=1e-6, rtol=0)
    assert abs(features.spliced_loss(tiny_gpt2, tokens, site, perfect.reconstruct) - clean) < 1e-5
    quality = features.sae_quality(tiny_gpt2, perfect, n_seqs=2)
    assert quality.variance_explained == pytest.approx(1.0, abs=1e-5)
    assert quality.loss_increase == pytest.approx(0.0, abs=1e-5)
    assert quality.spliced_loss == pytest.approx(quality.clean_loss, abs=1e-5)


def _brute_force_f1(acts: list[float], labels: list[bool]) -> tuple[float, float]:
    best, best_t = 0.0, float("inf")
    for t in sorted(set(acts), reverse=True):
        tp = sum(a >= t and y for a, y in zip(acts, labels, strict=True))
        predicted = sum(a >= t for a in acts)
        f1 = 2 * tp / (sum(labels) + predicted) if sum(labels) + predicted else 0.0
        if f1 > best + 1e-12:
            best, best_t = f1, t
    return best, best_t


def test_best_f1_matches_a_brute_force_scan():
    rng = random.Random(0)
    n, units, concepts = 40, 5, 3
    acts = [[rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, rng.random()]) for _ in range(units)] for _ in range(n)]
    labels = [[rng.random() < 0.25 for _ in range(concepts)] for _ in range(n)]
    labels[0] = [True] * concepts
    f1, thresholds = features.best_f1(torch.tensor(acts), torch.tensor(labels), chunk=2)
    for c in range(concepts):
        for u in range(units):
            column, truth = [row[u] for row in acts], [row[c] for row in labels]
            expected, t = _brute_force_f1(column, truth)
            assert float(f1[c, u]) == pytest.approx(expected, abs=1e-6)
            assert features.f1_at(torch.tensor(column), torch.tensor(truth), float(thresholds[c, u])) == pytest.approx(
                expected, abs=1e-6)
            if expected > 0:
                assert float(thresholds[c, u]) == pytest.approx(t)
    # A hand-made case: one unit separates the concept perfectly, F1 1 at its lowest positive activation.
    f1, t = features.best_f1(
        torch.tensor([[0.1], [0.9], [0.3], [0.8]]), torch.tensor([[False], [True], [False], [True]])
    )
    assert float(f1[0, 0]) == 1.0 and float(t[0, 0]) == pytest.approx(0.8)


def test_concept_labels_mark_the_planted_words(tiny_gpt2):
    text = features.concept_text(tiny_gpt2, 12, seed=3)
    assert text.labels.shape == (12, 32, len(features.concept_names()))
    assert not text.labels[:, 0].any()  # BOS
    nouns = {w for pair in NOUNS for w in pair}
    seen = set()
    for r, p, c in zip(*text.labels.nonzero(), strict=True):
        concept = text.concepts[c]
        seen.add(concept.split(":")[0])
        word = tiny_gpt2.tokenizer.decode([int(text.tokens[r, p])]).strip()
        if concept.startswith("ioi:"):
            assert any(name.endswith(word) for name in NAMES), (concept, word)
        if concept.startswith("number:"):
            assert any(noun.endswith(word) for noun in nouns), (concept, word)
    assert {"relation", "role", "ioi", "number"} <= seen


def test_concept_recovery_on_the_tiny_sae(sae_model):
    result = features.concept_recovery(sae_model, n_rows=6)
    assert len(result.rows) == len(features.concept_names())
    for row in result.rows:
        for candidate in features.CANDIDATES:
            assert 0.0 <= row[f"{candidate}_heldout_f1"] <= 1.0
            assert 0.0 <= row[f"{candidate}_train_f1"] <= 1.0
    assert 0.0 <= result.recovered("sae") <= 1.0
    json.dumps(result.to_json())


def test_feature_steering_uses_the_decoder_direction(sae_model):
    sae = features.load_sae(sae_model)
    v = sae.decoder_direction(3)
    probe = features.direction_probe(v * 5, sae.site, "f")
    torch.testing.assert_close(probe.direction("f"), v / v.norm())
    still = features.steer_with_feature(sae_model, sae, 3, 0.0, "The cat sat")
    torch.testing.assert_close(still.after, still.before)
    moved = features.steer_with_feature(sae_model, sae, 3, 20.0, "The cat sat")
    assert float((moved.after - moved.before).abs().max()) > 1e-4


def _cli(*args: str) -> dict:
    from interp.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_features_json(sae_model_dir):
    quality = _cli("features", "quality", "-m", str(sae_model_dir), "--n-seqs", "2", "--json")
    assert quality["num_latents"] == 64 and 0 < quality["l0"] <= 4
    top = _cli("features", "top", "-m", str(sae_model_dir), "--feature", "1", "--k", "5", "--n-tokens", "640", "--json")
    assert top["unit"] == "SAE feature 1" and len(top["examples"]) == 5
    values = [e["activation"] for e in top["examples"]]
    assert values == sorted(values, reverse=True)


def test_features_page_renders(sae_model_dir, tmp_path_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_DASHBOARD_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("INTERP_DASHBOARD_HUB", raising=False)
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    at = AppTest.from_file(str(APPS / "dashboard.py"), default_timeout=300)
    at.session_state["model_path"] = str(sae_model_dir)
    at.session_state["prompt"] = "The cat sat on the"
    at.run()
    at.switch_page("app_pages/features.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert len(at.get("plotly_chart")) == 2  # examples and steering
    at.radio(key="features_kind").set_value("neuron").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
def test_shipped_sae_matches_its_recorded_quality(name):
    model = interp.load(name)
    sae = features.load_sae(model)
    assert sae.site == hook_name("resid_post", 3) and sae.num_latents == 1024
    cap = interp.capture(model, "The Eiffel Tower is located in the city of", [f"sae:{sae.site}", sae.site])
    torch.testing.assert_close(cap[f"sae:{sae.site}"], sae.encode(cap[sae.site]), atol=0, rtol=0)
    quality = features.sae_quality(model, sae)
    recorded = sae.meta["quality"]
    assert quality.variance_explained == pytest.approx(recorded["variance_explained"], abs=1e-4)
    assert quality.loss_increase == pytest.approx(recorded["loss_increase"], abs=1e-4)
    assert quality.variance_explained > 0.85 and quality.loss_increase < 0.05
