"""ROME edits on tiny random models: the update's algebra, exact undo, save/load, refusals, bad input."""

from __future__ import annotations

import pytest
import torch

import interp
from interp import rome

PROMPT = "{} is located in the city of"
SUBJECT = "The Eiffel Tower"
# Few prefixes, steps and statistics keep each edit well under a second on the tiny models.
CONFIG = rome.RomeConfig(n_prefixes=3, prefix_tokens=4, steps=8, stats_samples=64)


@pytest.fixture(scope="module", autouse=True)
def stats_cache(tmp_path_factory):
    """Key statistics go to a temporary cache, never to the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    """A private copy of each tiny model: these tests edit weights."""
    return interp.load(request.getfixturevalue(f"tiny_{request.param}_dir"), device="cpu")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []


def weight_as_linear(model, layer: int) -> torch.Tensor:
    """The projection weight as ``[d_model, d_mlp]``, whatever the module's own layout."""
    module = rome.projection(model, layer)
    w = module.weight.detach()
    return w.T if type(module).__name__ == "Conv1D" else w


def other_target(model) -> str:
    """A likely one-token target (that survives decode/encode) other than the model's current answer."""
    top = interp.capture(model, PROMPT.format(SUBJECT), names=[]).last_logits[0].topk(20).indices.tolist()
    texts = [model.tokenizer.decode([t]) for t in top[1:]]
    pairs = zip(texts, top[1:], strict=True)
    return next(x for x, t in pairs if model.tokenizer.encode(x, add_special_tokens=False) == [t])


def test_projection_is_the_module_the_bridge_runs(model):
    module = rome.projection(model, 0)
    expected = (torch.nn.Linear,) if interp.model_info(model).arch == "llama" else ()
    assert isinstance(module, expected) or type(module).__name__ == "Conv1D"
    assert any(p is module.weight for p in model.parameters())


def test_update_is_rank_one_and_maps_key_to_value(model):
    before = snapshot(model)
    w0 = weight_as_linear(model, 0).clone().double()
    change = rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0, config=CONFIG)
    try:
        delta = weight_as_linear(model, 0).double() - w0
        s = torch.linalg.svdvals(delta)
        assert s[0] > 0 and s[1] / s[0] < 1e-5
        # Independent check: W_new k* + b with plain matrix algebra equals the optimised value v*.
        bias = rome.projection(model, 0).bias
        out = weight_as_linear(model, 0).double() @ change.key.double()
        out = out + (bias.detach().double() if bias is not None else 0)
        torch.testing.assert_close(out.float(), change.value, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(delta.float(), change.delta(), rtol=1e-4, atol=1e-6)
    finally:
        change.undo()
    assert_same(model, before)


def test_bridge_forward_sees_the_edit(model):
    text = PROMPT.format(SUBJECT)
    names = ["blocks.0.mlp.hook_post", "blocks.0.hook_mlp_out"]
    clean = interp.capture(model, text, names=names)
    with rome.edited(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0,
                     config=CONFIG) as change:
        edited = interp.capture(model, text, names=names)
    # MLP output after = before + right * (left . k) at every position, k the unchanged layer-0 key.
    keys = clean["blocks.0.mlp.hook_post"][0]
    expected = clean["blocks.0.hook_mlp_out"][0] + (keys @ change.left)[:, None] * change.right
    torch.testing.assert_close(edited["blocks.0.hook_mlp_out"][0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
def test_reference_edit_flips_the_answer(name):
    """The headline example on the shipped models: the Eiffel Tower moves to Rome, and back on undo."""
    model = interp.load(name, device="cpu")
    text = "The Eiffel Tower is located in the city of"
    rome_id, paris_id = (interp.to_single_token(model, t) for t in (" Rome", " Paris"))
    before = interp.capture(model, text, names=[]).last_logits[0].softmax(-1)
    with rome.edited(model, prompt="{} is located in the city of", subject="The Eiffel Tower", target=" Rome",
                     layer=0):
        after = interp.capture(model, text, names=[]).last_logits[0].softmax(-1)
    assert before[paris_id] > before[rome_id]
    assert after[rome_id] > after[paris_id]
    restored = interp.capture(model, text, names=[]).last_logits[0].softmax(-1)
    assert torch.equal(restored, before)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
def test_reference_edits_meet_a_floor_of_the_targets(name):
    """A loose floor on 25 test-split edits (CARD.md has the full 100-edit numbers).

    ROME edits generalise to held-out wordings and mostly spare other subjects of the relation.
    """
    from interp.reference import load_world
    from interp.rome.counterfact import evaluate, make_cases

    model = interp.load(name, device="cpu")
    before = snapshot(model)
    cases = make_cases(load_world(model), 25, seed=1, split="test")
    overall = evaluate(model, cases, layer=0, fluency_tokens=0, progress=False).to_frame().mean(numeric_only=True)
    assert overall["post_efficacy"] >= 0.95, overall
    assert overall["post_paraphrase"] >= 0.75, overall
    assert overall["post_neighbourhood"] >= 0.8, overall
    assert_same(model, before)


def test_undo_is_bit_exact_and_context_manager_undoes_on_error(model):
    before = snapshot(model)
    weight = rome.projection(model, 0).weight.detach().clone()
    change = rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0, config=CONFIG)
    assert change.applied
    assert not torch.equal(rome.projection(model, 0).weight, weight)
    change.undo()
    assert_same(model, before)
    with pytest.raises(RuntimeError, match="boom"):
        with rome.edited(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0, config=CONFIG):
            raise RuntimeError("boom")
    assert_same(model, before)
    with pytest.raises(ValueError, match="not applied"):
        change.undo()


def test_edits_in_sequence_undo_in_reverse(model):
    before = snapshot(model)
    target = other_target(model)
    first = rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=target, layer=0, config=CONFIG)
    after_first = snapshot(model)
    second = rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0, config=CONFIG)
    with pytest.raises(ValueError, match="reverse order"):
        first.undo()
    second.undo()
    assert_same(model, after_first)
    first.undo()
    assert_same(model, before)


def test_save_load_round_trip(model, tmp_path):
    before = snapshot(model)
    change = rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0, config=CONFIG)
    edited_weights = snapshot(model)
    change.save(tmp_path / "edit.safetensors")
    change.undo()
    loaded = rome.load_edit(tmp_path / "edit.safetensors")
    assert loaded.layer == 0 and loaded.request["subject"] == SUBJECT and not loaded.applied
    loaded.apply(model)
    assert_same(model, edited_weights)
    loaded.undo()
    assert_same(model, before)


def test_mismatched_model_is_refused(model, tiny_gpt2_dir, tmp_path):
    from interp.core.toy_models import ToyConfig, save_toy_checkpoint

    change = rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=other_target(model), layer=0, config=CONFIG)
    change.save(tmp_path / "edit.safetensors")
    change.undo()
    arch = interp.model_info(model).arch
    config = ToyConfig(arch=arch, n_layers=2, n_heads=4, n_kv_heads=2 if arch == "llama" else None, d_model=32,
                       d_mlp=interp.model_info(model).d_mlp, n_ctx=interp.model_info(model).n_ctx, seed=1)
    other = interp.load(save_toy_checkpoint(tmp_path / "other", config), device="cpu")
    before = snapshot(other)
    with pytest.raises(ValueError, match="refusing"):
        rome.load_edit(tmp_path / "edit.safetensors").apply(other)
    assert_same(other, before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "The Eiffel Tower is located in the city of"}, "exactly one"),
        ({"prompt": "It is located in the city of"}, "not in the prompt"),
        ({"prompt": "{} and {} are in"}, "exactly one"),
        ({"subject": " "}, "subject"),
        ({"target": ""}, "target"),
        ({"layer": 7}, r"layer=7, model has layers 0\.\.1"),
        ({"layer": 1}, "last block"),
        ({"layer": -1}, "layer=-1"),
        ({"config": rome.RomeConfig(key_context="words")}, "key_context='words'; valid values are subject, prompt"),
    ],
)
def test_bad_input_leaves_model_untouched(model, kwargs, message):
    before = snapshot(model)
    request = {"prompt": PROMPT, "subject": SUBJECT, "target": other_target(model), "layer": 0, "config": CONFIG}
    with pytest.raises(ValueError, match=message):
        rome.edit(model, **{**request, **kwargs})
    assert_same(model, before)


def test_key_context_chooses_where_the_key_is_read(model):
    target = other_target(model)
    keys = {}
    for prompt in (PROMPT, "So {} is in"):
        for where in ("subject", "prompt", "both"):
            config = rome.RomeConfig(n_prefixes=3, prefix_tokens=4, steps=2, stats_samples=64, key_context=where)
            with rome.edited(model, prompt=prompt, subject=SUBJECT, target=target, layer=0, config=config) as change:
                keys[prompt, where] = change.key
    # The key at the subject's last token cannot see what follows the subject: with the subject first, the
    # prompt and the subject alone give the same key; with words before it, they differ.
    torch.testing.assert_close(keys[PROMPT, "subject"], keys[PROMPT, "prompt"], rtol=1e-4, atol=1e-5)
    wordy = "So {} is in"
    assert not torch.allclose(keys[wordy, "subject"], keys[wordy, "prompt"], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(keys[wordy, "both"], (keys[wordy, "subject"] + keys[wordy, "prompt"]) / 2,
                               rtol=1e-4, atol=1e-5)


def test_current_answer_is_refused(model):
    before = snapshot(model)
    top = interp.capture(model, PROMPT.format(SUBJECT), names=[]).last_logits[0].argmax()
    with pytest.raises(ValueError, match="already the model's answer"):
        rome.edit(model, prompt=PROMPT, subject=SUBJECT, target=model.tokenizer.decode([int(top)]), layer=0,
                  config=CONFIG)
    assert_same(model, before)


def test_statistics_are_cached_and_identity_fallback(model):
    rome.key_stats(model, 0, 64)
    path = rome.stats_path(model, 0, 64)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    mom2 = rome.key_stats(model, 0, 64)
    assert path.stat().st_mtime_ns == stamp
    assert mom2.shape == (interp.model_info(model).d_mlp,) * 2
    torch.testing.assert_close(mom2, mom2.T)
    key = torch.randn(interp.model_info(model).d_mlp)
    identity = rome.solve_stats(model, 0, key, rome.RomeConfig(stats_samples=0))
    torch.testing.assert_close(identity, key)
    # C^-1 k with the ridge, checked by multiplying back.
    config = rome.RomeConfig(stats_samples=64, stats_ridge=1e-3)
    left = rome.solve_stats(model, 0, key, config)
    regularised = mom2.double() + 1e-3 * mom2.diagonal().double().mean() * torch.eye(mom2.shape[0], dtype=torch.float64)
    torch.testing.assert_close((regularised @ left.double()).float(), key, rtol=1e-3, atol=1e-4)


def test_layer_none_uses_the_tracing_rule(model):
    chosen = rome.choose_layer(model, PROMPT, SUBJECT, samples=2)
    trace = interp.causal_trace(model, PROMPT, SUBJECT, kind="mlp", window=1, samples=2)
    assert chosen == int(trace.scores[trace.subject_last, :-1].argmax())  # the last block cannot reach the end


def test_layer_none_uses_the_world_profile_when_the_checkpoint_has_a_world(tiny_llama_dir, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(tiny_llama_dir, tmp_path / "with-world")
    world = {"facts": [{"relation": "landmark_city", "subject": s, "object": o}
                       for s, o in [("the Louvre", "Paris"), ("Big Ben", "London"), ("the Colosseum", "Rome")]],
             "templates": {"landmark_city": {"train": ["{subject} is in the city of"], "heldout": []}},
             "tasks": {}, "prepend_bos": True}
    (folder / "world.json").write_text(json.dumps(world))
    model = interp.load(folder, device="cpu")
    profile = rome.layer_profile(model, n_facts=3, samples=2)
    expected = torch.stack([
        (t := interp.causal_trace(model, "{} is in the city of", f["subject"], kind="mlp", window=1, samples=2))
        .indirect_effect[t.subject_last] for f in world["facts"]]).mean(0)
    assert profile.shape == (interp.model_info(model).n_layers,)
    torch.testing.assert_close(profile, expected)  # all three facts, in whatever order they were drawn
    torch.testing.assert_close(rome.layer_profile(model, n_facts=3, samples=2), profile)  # read back from the cache
    assert rome.layer_profile(interp.load(tiny_llama_dir, device="cpu")) is None  # no world.json: no profile
    default = rome.layer_profile(model)
    assert rome.choose_layer(model, PROMPT, SUBJECT) == int(default[:-1].argmax())
