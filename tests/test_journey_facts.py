"""The architecture stage's facts: copied from ``model_info``, and a mixture of experts described as one."""

from __future__ import annotations

import dataclasses

import pytest

import interp
from interp import journey
from interp.core.model_info import ModelInfo
from interp.core.toy_families import save_family
from interp.journey.architecture import FROM_INFO, describe_ffn, facts_from_model

MOE = ("mixtral", "qwen2_moe", "qwen3_moe")


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """The tiny mixture-of-experts families and a dense GeGLU one, built once for this module."""
    return {family: interp.load(save_family(family, tmp_path_factory.mktemp(family) / family), device="cpu")
            for family in (*MOE, "gemma2")}


def _experts_config(hf) -> tuple[int, int, int, int]:
    """(experts, top-k, expert width, shared expert width) as the Hugging Face config spells them."""
    n_experts = getattr(hf, "num_local_experts", None) or hf.num_experts
    width = getattr(hf, "moe_intermediate_size", None) or hf.intermediate_size  # Mixtral's experts: the latter
    return n_experts, hf.num_experts_per_tok, width, getattr(hf, "shared_expert_intermediate_size", None) or 0


def test_every_shared_field_is_model_infos(families, tiny_gpt2, tiny_llama):
    assert set(FROM_INFO) == {f.name for f in dataclasses.fields(journey.ArchitectureFacts)} & {
        f.name for f in dataclasses.fields(ModelInfo)}
    assert {"n_layers", "d_model", "n_heads", "n_kv_heads", "d_mlp", "norm", "positional"} <= set(FROM_INFO)
    for model in (*families.values(), tiny_gpt2, tiny_llama):
        facts, info = facts_from_model(model), interp.model_info(model)
        assert {name: getattr(facts, name) for name in FROM_INFO} == {name: getattr(info, name) for name in FROM_INFO}
        assert facts.n_params == sum(p.numel() for p in model.original_model.parameters())


@pytest.mark.parametrize("family", MOE)
def test_a_mixture_of_experts_is_described_as_one(family, families):
    model = families[family]
    hf = model.original_model.config
    n_experts, top_k, width, shared = _experts_config(hf)
    facts = journey.architecture(model, compare=[], public=False).models[0]
    assert (facts.n_experts, facts.top_k, facts.d_expert, facts.d_shared_expert) == (n_experts, top_k, width, shared)
    expected = f"mixture of experts: {n_experts} experts, top-{top_k}, each a SwiGLU of {width}"
    assert facts.ffn == expected + (f" + a shared SwiGLU of {shared}" if shared else "")
    assert (shared > 0) == (family == "qwen2_moe")
    # The expert width is read from the weights: the down projection of one expert, not the config.
    block = model.blocks[0].mlp.original_component
    down = next(p for name, p in block.experts.named_parameters() if "down_proj" in name)
    assert tuple(down.shape) == (n_experts, interp.model_info(model).d_model, width)


def test_dense_models_name_their_feed_forward(families, tiny_gpt2, tiny_llama):
    for model, kind in ((families["gemma2"], "GeGLU"), (tiny_gpt2, "GELU MLP"), (tiny_llama, "SwiGLU")):
        facts = facts_from_model(model)
        assert (facts.ffn, facts.n_experts, facts.top_k, facts.d_expert, facts.d_shared_expert) == (kind, 0, 0, 0, 0)


def test_the_stage_table_shows_the_experts(families):
    stage = journey.architecture(families["qwen2_moe"], compare=[families["mixtral"]], public=True)
    table = stage.figure().data[0]
    ffn = list(table.header.values).index("ffn")
    shown = [text.replace("<br>", " ") for text in table.cells.values[ffn]]
    assert shown == [m.ffn for m in stage.models]
    assert shown[0].startswith("mixture of experts: 4 experts, top-2") and "shared" in shown[0]
    assert stage.to_frame()["n_experts"].tolist()[:2] == [4, 4]
    mixtral = journey.PUBLIC_MODELS[-1]
    assert mixtral.ffn == describe_ffn(mixtral, "SwiGLU") and mixtral.n_experts == 8


def test_public_mixtral_parameter_count_matches_its_shape():
    """46.7B from the published config: embeddings in and out, and per layer attention (GQA), eight SwiGLU
    experts, the router and two norms."""
    m = next(m for m in journey.PUBLIC_MODELS if m.n_experts)
    attn = m.d_model * m.n_heads * m.d_head * 2 + m.d_model * m.n_kv_heads * m.d_head * 2
    layer = attn + m.n_experts * 3 * m.d_model * m.d_expert + m.d_model * m.n_experts + 2 * m.d_model
    assert m.n_params == m.n_layers * layer + 2 * m.d_vocab * m.d_model + m.d_model
