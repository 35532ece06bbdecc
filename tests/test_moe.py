"""Mixture of experts: router capture, expert outputs and the journey's FFN stage on tiny Mixtral / Qwen2-MoE.

Every number is checked against the Hugging Face weights directly: the router input is recomputed from
``resid_mid`` and the block's RMSNorm, the router from its weight matrix (softmax, top-k and, where the config
says so, renormalisation, as the HF router modules do), and each expert from its ``gate_up_proj`` /
``down_proj`` slices.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import interp
from interp.core.hooks import MOE_SITES, hook_name, moe_layers
from interp.core.toy_families import save_family

PROMPTS = ["The cat sat on the mat and the dog sat on the log.", "Paris is the capital"]
ATOL = 1e-5
APPS = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture(scope="module")
def moe_dirs(tmp_path_factory) -> dict[str, Path]:
    return {family: save_family(family, tmp_path_factory.mktemp(family)) for family in ("mixtral", "qwen2_moe")}


@pytest.fixture(scope="module")
def moe_models(moe_dirs) -> dict[str, object]:
    return {family: interp.load(folder, device="cpu") for family, folder in moe_dirs.items()}


@pytest.fixture(params=["mixtral", "qwen2_moe"])
def moe(request, moe_models):
    return moe_models[request.param]


def _hf_block(model, layer):
    return model.original_model.model.layers[layer]


def _router_input(model, cap, layer):
    """The MoE block's input recomputed from resid_mid and the HF post-attention RMSNorm."""
    norm = _hf_block(model, layer).post_attention_layernorm
    x = cap.resid(layer, "mid").float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight.float()


def _expert(experts, e, x):
    """One expert of a batched HF experts module, from its weight slices (SwiGLU)."""
    gate, up = (x @ experts.gate_up_proj[e].T).chunk(2, dim=-1)
    return (F.silu(gate) * up) @ experts.down_proj[e].T


def test_router_capture_matches_gate_weights(moe):
    config = moe.original_model.config
    cap = interp.capture(moe, PROMPTS, names=["resid_mid", "experts"])
    b, p = cap.tokens.shape
    n_experts, top_k = moe.cfg.num_experts, config.num_experts_per_tok
    for layer in range(config.num_hidden_layers):
        x = _router_input(moe, cap, layer)
        torch.testing.assert_close(cap[hook_name("expert_in", layer)], x, atol=ATOL, rtol=0)
        logits = x @ _hf_block(moe, layer).mlp.gate.weight.float().T
        torch.testing.assert_close(cap.router_logits(layer), logits, atol=ATOL, rtol=0)
        probs = logits.softmax(-1)
        top = probs.topk(top_k, dim=-1)
        weights = top.values / top.values.sum(-1, keepdim=True) if getattr(config, "norm_topk_prob", True) \
            else top.values
        assert cap.expert_indices(layer).shape == (b, p, top_k)
        assert torch.equal(cap.expert_indices(layer), top.indices)
        expected = torch.zeros(b, p, n_experts).scatter(-1, top.indices, weights)
        torch.testing.assert_close(cap.expert_weights(layer), expected, atol=ATOL, rtol=0)


def test_expert_contributions_sum_to_block_output(moe):
    cap = interp.capture(moe, PROMPTS, names="experts")
    for layer in moe_layers(moe):
        hf = _hf_block(moe, layer).mlp
        x, chosen = cap[hook_name("expert_in", layer)], cap.expert_indices(layer)
        outs = interp.journey.expert_outputs(moe, layer, cap)
        assert outs.shape == (*chosen.shape, moe.cfg.d_model)
        by_hand = torch.stack([torch.stack([_expert(hf.experts, int(e), x[i, j]) for e in chosen[i, j]])
                               for i in range(x.shape[0]) for j in range(x.shape[1])]).reshape(outs.shape)
        torch.testing.assert_close(outs, by_hand, atol=ATOL, rtol=0)
        weights = cap.expert_weights(layer).gather(-1, chosen)
        routed = (weights[..., None] * outs).sum(-2)
        shared = torch.zeros_like(routed)
        if hasattr(hf, "shared_expert"):  # Qwen2-MoE adds a sigmoid-gated shared expert to the routed sum
            shared = torch.sigmoid(hf.shared_expert_gate(x)) * hf.shared_expert(x)
            assert shared.norm() > 1e-3  # the identity below would not notice a missing shared expert otherwise
        torch.testing.assert_close(routed + shared, cap.mlp_out(layer), atol=ATOL, rtol=0)


def test_expert_routing_stage(moe_models):
    model = moe_models["mixtral"]
    cap = interp.capture(model, PROMPTS[0], names="experts")
    n_pos, top_k = cap.tokens.shape[1], model.original_model.config.num_experts_per_tok
    for layer in moe_layers(model):
        stage = interp.journey.expert_routing(model, layer=layer, position=3, cap=cap)
        chosen = cap.expert_indices(layer)[0]
        assert int(stage.load.sum()) == n_pos * top_k
        assert torch.equal(stage.load, torch.bincount(chosen.flatten(), minlength=stage.n_experts))
        assert torch.equal(stage.experts, chosen)
        torch.testing.assert_close(stage.router_probs.sum(-1), torch.ones(n_pos), atol=ATOL, rtol=0)
        torch.testing.assert_close(stage.weights.sum(-1), torch.ones(n_pos), atol=ATOL, rtol=0)  # Mixtral renormalises
        assert stage.unrouted_norms.max() < ATOL
        writes = stage.weights[..., None] * interp.journey.expert_outputs(model, layer, cap)[0]
        torch.testing.assert_close(stage.contribution_norms, writes.norm(dim=-1), atol=ATOL, rtol=0)
        predicted = int(cap.logits[0, 3].argmax())
        torch.testing.assert_close(stage.logit_contributions, writes[3] @ model.W_U[:, predicted], atol=ATOL, rtol=0)
        assert len(stage.to_frame()) == n_pos * top_k
        frame = stage.experts_frame()
        assert frame["tokens_routed"].tolist() == stage.load.tolist()
        assert (frame["weight_here"] > 0).sum() == top_k
        fig = stage.figure()
        assert [t.type for t in fig.data] == ["heatmap", "bar", "bar"]


def test_journey_runs_all_nine_stages(moe_models):
    model = moe_models["mixtral"]
    journey = interp.journey.run(model, PROMPTS[0], layer=1, head=1)
    assert isinstance(journey.ffn, interp.journey.ExpertRouting)
    figures = journey.figures()
    assert set(figures) == {"tokens", "embeddings", "positions", "attention", "heads", "ffn", "residual", "output",
                            "architecture"}
    # The same stage computed on its own (its own capture) agrees with the journey's.
    alone = interp.journey.feed_forward(model, PROMPTS[0], layer=1)
    assert torch.equal(alone.experts, journey.ffn.experts)
    torch.testing.assert_close(alone.contribution_norms, journey.ffn.contribution_norms, atol=ATOL, rtol=0)


WIDTH_KEYS = {"mixtral": ("intermediate_size", None),
              "qwen2_moe": ("moe_intermediate_size", "shared_expert_intermediate_size")}
"""Config keys of one routed expert's width and of the shared expert's width: Qwen-MoE's ``intermediate_size``
is a dense width its expert blocks never use."""


def _down_size(module) -> int:
    """Entries of a feed-forward's down projection (every expert's, for a stack of experts).

    That is ``d_model`` times the hidden width (times the experts), whatever the layout of the weight.
    """
    return sum(p.numel() for name, p in module.named_parameters() if "down_proj" in name)


def test_model_info_reads_the_experts_widths(moe, moe_dirs, tiny_llama):
    family = moe.original_model.config.model_type
    config = json.loads((moe_dirs[family] / "config.json").read_text())
    width_key, shared_key = WIDTH_KEYS[family]
    if width_key != "intermediate_size":  # else the test could not tell the experts' width from the dense one
        assert config[width_key] != config["intermediate_size"]
    info = interp.model_info(moe)
    assert info.is_moe
    assert (info.n_experts, info.top_k, info.d_mlp, info.d_shared_expert) == (
        config.get("num_local_experts") or config["num_experts"], config["num_experts_per_tok"],
        config[width_key], config[shared_key] if shared_key else 0)
    for layer in moe_layers(moe):
        mlp = _hf_block(moe, layer).mlp
        assert _down_size(mlp.experts) == info.n_experts * moe.cfg.d_model * info.d_mlp
        shared = getattr(mlp, "shared_expert", None)
        assert (_down_size(shared) if shared is not None else 0) == moe.cfg.d_model * info.d_shared_expert
    dense = interp.model_info(tiny_llama)
    assert (dense.is_moe, dense.n_experts, dense.top_k, dense.d_shared_expert) == (False, 0, 0, 0)
    assert dense.d_mlp == tiny_llama.original_model.config.intermediate_size


def test_dense_models_refuse_moe_requests(tiny_llama, moe_models):
    # On Llama, blocks.{L}.mlp.gate is the gated MLP's gate projection: the alias must refuse, not alias it.
    for alias in [*MOE_SITES, "experts"]:
        with pytest.raises(ValueError, match=f"names='{alias}' needs a mixture-of-experts model; llama"):
            interp.capture(tiny_llama, "The cat", names=alias)
    everything = interp.capture(tiny_llama, "The cat", names="all")
    assert not any(name.endswith(MOE_SITES["router_logits"].split("}")[-1]) for name in everything.hook_names)
    with pytest.raises(ValueError, match="layer=0 of llama is not a mixture-of-experts block"):
        interp.journey.expert_routing(tiny_llama, "The cat", layer=0)
    mixtral = moe_models["mixtral"]
    # TransformerLens aliases the MoE block's d_model output to mlp.hook_post: it holds no neurons.
    with pytest.raises(ValueError, match="names='neurons' needs a dense MLP; mixtral"):
        interp.capture(mixtral, "The cat", names="neurons")
    with pytest.raises(ValueError, match="mixtral is a mixture of experts.*expert_routing"):
        interp.journey.top_neurons(mixtral, "The cat", layer=0)
    assert interp.capture(mixtral, "The cat", names="all").router_logits(1).shape[-1] == 4


@pytest.mark.slow
def test_walkthrough_shows_the_experts(moe_dirs, tmp_path_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_DASHBOARD_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("INTERP_DASHBOARD_HUB", raising=False)
    monkeypatch.syspath_prepend(str(APPS))
    start = time.perf_counter()
    at = AppTest.from_file(str(APPS / "dashboard.py"), default_timeout=600)
    at.session_state["model_path"] = str(moe_dirs["mixtral"])
    at.run()
    at.switch_page("app_pages/walkthrough.py").run()
    at.selectbox(key="walk_stage").set_value("ffn").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.subheader[0].value == "6 · The mixture-of-experts block"
    (chart,) = at.get("plotly_chart")
    assert "mixture of experts" in chart.proto.spec
    assert any("tokens_routed" in frame.value.columns for frame in at.dataframe)
    print(f"walkthrough on tiny Mixtral: {time.perf_counter() - start:.1f} s", file=sys.stderr)
