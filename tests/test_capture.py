"""interp.capture: shapes, values against independent computations, batching and errors."""

from __future__ import annotations

import math

import pytest
import torch

import interp

PROMPT = "The Eiffel Tower is located in the city of"
PROMPTS = ["The cat", "When Mary and John went to the store, John gave a drink to"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def hf_model(request):
    """A plain HF model per architecture, loaded independently of interp (eager attention)."""
    from transformers import AutoModelForCausalLM

    cache = {}

    def get(arch: str):
        if arch not in cache:
            folder = request.getfixturevalue(f"tiny_{arch}_dir")
            cache[arch] = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        return cache[arch]

    return get


def arch_of(model) -> str:
    return interp.model_info(model).arch


def test_shapes(tiny_model):
    info = interp.model_info(tiny_model)
    cap = interp.capture(tiny_model, PROMPTS, names="all")
    b, p = cap.tokens.shape
    h, kv, d = info.n_heads, info.n_kv_heads, info.d_head
    assert cap.logits.shape == (b, p, info.d_vocab)
    for layer in range(info.n_layers):
        for where in ("pre", "mid", "post"):
            assert cap.resid(layer, where).shape == (b, p, info.d_model)
        assert cap.pattern(layer).shape == cap.scores(layer).shape == (b, h, p, p)
        assert cap.pattern(layer, head=1).shape == (b, p, p)
        assert cap.q(layer).shape == cap.z(layer).shape == (b, p, h, d)
        assert cap.k(layer).shape == cap.v(layer).shape == (b, p, kv, d)
        assert cap.k(layer, expand=True).shape == cap.v(layer, expand=True).shape == (b, p, h, d)
        assert cap.attn_out(layer).shape == cap.mlp_out(layer).shape == (b, p, info.d_model)
        assert cap.neurons(layer).shape == (b, p, info.d_mlp)
    assert cap["hook_embed"].shape == (b, p, info.d_model)
    assert cap["ln_final.hook_normalized"].shape == (b, p, info.d_model)
    assert len(cap.str_tokens) == b and len(cap.str_tokens[0]) == p


def test_model_info(tiny_gpt2, tiny_llama):
    gpt2, llama = interp.model_info(tiny_gpt2), interp.model_info(tiny_llama)
    assert (gpt2.arch, gpt2.n_heads, gpt2.n_kv_heads, gpt2.d_model, gpt2.d_head, gpt2.d_mlp, gpt2.n_ctx) == (
        "gpt2", 4, 4, 32, 8, 128, 32)
    assert (gpt2.norm, gpt2.positional, gpt2.d_vocab, gpt2.is_gqa) == ("layernorm", "learned", 300, False)
    assert (llama.arch, llama.n_heads, llama.n_kv_heads, llama.d_mlp, llama.n_ctx) == ("llama", 4, 2, 64, 64)
    assert (llama.norm, llama.positional, llama.is_gqa) == ("rmsnorm", "rotary", True)


def test_repr_and_frame(tiny_gpt2):
    cap = interp.capture(tiny_gpt2, PROMPTS, names="resid")
    assert repr(cap).startswith("Capture(") and "6 hooks" in repr(cap) and "tensor" not in repr(cap)
    frame = cap.to_frame()
    assert frame["hook"].tolist() == cap.hook_names
    assert frame["shape"].iloc[0] == tuple(cap.resid(0).shape)


def test_only_requested_hooks_are_kept(tiny_gpt2):
    cap = interp.capture(tiny_gpt2, PROMPT, names=["pattern", "blocks.1.mlp.hook_pre"])
    assert cap.hook_names == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern", "blocks.1.mlp.hook_pre"]
    assert not any(t.requires_grad for t in cap.activations.values())


def test_logits_match_plain_hf(tiny_model, hf_model):
    cap = interp.capture(tiny_model, PROMPTS, names=[])
    with torch.no_grad():
        expected = hf_model(arch_of(tiny_model))(cap.tokens, attention_mask=cap.attention_mask).logits
    real = cap.attention_mask.bool()
    torch.testing.assert_close(cap.logits[real], expected[real], atol=1e-4, rtol=0)


def test_residual_identities(tiny_model):
    cap = interp.capture(tiny_model, PROMPT, names=["resid", "attn_out", "mlp_out"])
    n_layers = interp.model_info(tiny_model).n_layers
    for layer in range(n_layers):
        torch.testing.assert_close(cap.resid(layer, "mid"), cap.resid(layer) + cap.attn_out(layer), atol=ATOL, rtol=0)
        torch.testing.assert_close(
            cap.resid(layer, "post"), cap.resid(layer, "mid") + cap.mlp_out(layer), atol=ATOL, rtol=0
        )
        if layer + 1 < n_layers:
            torch.testing.assert_close(cap.resid(layer, "post"), cap.resid(layer + 1, "pre"), atol=0, rtol=0)


def _causal_softmax(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q.k / sqrt(d_head) + causal mask); q, k: [batch pos head d_head]."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    n = q.shape[1]
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def test_pattern_is_causal_softmax_of_q_k(tiny_model):
    info = interp.model_info(tiny_model)
    rotary = info.positional == "rotary"
    names = ["pattern", "rot_q", "rot_k"] if rotary else ["pattern", "q", "k"]
    cap = interp.capture(tiny_model, PROMPT, names=names)
    for layer in range(info.n_layers):
        q = cap.rot_q(layer) if rotary else cap.q(layer)
        k = cap.rot_k(layer, expand=True) if rotary else cap.k(layer)
        torch.testing.assert_close(cap.pattern(layer), _causal_softmax(q, k), atol=ATOL, rtol=0)


def test_gqa_keys_repeat_per_query_group(tiny_llama):
    cap = interp.capture(tiny_llama, PROMPT, names=["pattern", "rot_q", "rot_k"])
    k = cap.rot_k(0)
    assert k.shape[2] == 2
    expanded = cap.rot_k(0, expand=True)
    for head in range(4):
        torch.testing.assert_close(expanded[:, :, head], k[:, :, head // 2], atol=0, rtol=0)
        one_head = _causal_softmax(cap.rot_q(0)[:, :, head : head + 1], k[:, :, head // 2 : head // 2 + 1])
        torch.testing.assert_close(cap.pattern(0, head=head), one_head[:, 0], atol=ATOL, rtol=0)


def test_q_k_v_from_hf_weights(tiny_model, hf_model):
    """Queries, keys, values, z and attn_out recomputed from the HF modules by hand."""
    info = interp.model_info(tiny_model)
    names = ["resid", "q", "k", "v", "z", "attn_out"] + (["rot_q", "rot_k"] if info.positional == "rotary" else [])
    cap = interp.capture(tiny_model, PROMPT, names=names)
    hf = hf_model(info.arch)
    h, kv, d = info.n_heads, info.n_kv_heads, info.d_head
    with torch.no_grad():
        for layer in range(info.n_layers):
            x = cap.resid(layer)
            if info.arch == "gpt2":
                block = hf.transformer.h[layer]
                qkv = block.attn.c_attn(block.ln_1(x))
                q, k, v = qkv.split(info.d_model, dim=-1)
                out_proj = block.attn.c_proj
            else:
                from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

                block = hf.model.layers[layer]
                normed = block.input_layernorm(x)
                q, k, v = block.self_attn.q_proj(normed), block.self_attn.k_proj(normed), block.self_attn.v_proj(normed)
                positions = torch.arange(x.shape[1])[None]
                cos, sin = hf.model.rotary_emb(x, positions)
                rq, rk = apply_rotary_pos_emb(
                    q.view(1, -1, h, d).transpose(1, 2), k.view(1, -1, kv, d).transpose(1, 2), cos, sin
                )
                torch.testing.assert_close(cap.rot_q(layer), rq.transpose(1, 2), atol=ATOL, rtol=0)
                torch.testing.assert_close(cap.rot_k(layer), rk.transpose(1, 2), atol=ATOL, rtol=0)
                out_proj = block.self_attn.o_proj
            torch.testing.assert_close(cap.q(layer), q.view(1, -1, h, d), atol=ATOL, rtol=0)
            torch.testing.assert_close(cap.k(layer), k.view(1, -1, kv, d), atol=ATOL, rtol=0)
            torch.testing.assert_close(cap.v(layer), v.view(1, -1, kv, d), atol=ATOL, rtol=0)
            torch.testing.assert_close(cap.attn_out(layer), out_proj(cap.z(layer).flatten(2)), atol=ATOL, rtol=0)


def test_z_is_pattern_times_values(tiny_model):
    info = interp.model_info(tiny_model)
    cap = interp.capture(tiny_model, PROMPT, names=["pattern", "v", "z"])
    for layer in range(info.n_layers):
        z = torch.einsum("bhqk,bkhd->bqhd", cap.pattern(layer), cap.v(layer, expand=True))
        torch.testing.assert_close(cap.z(layer), z, atol=ATOL, rtol=0)


def test_neurons_from_hf_weights(tiny_model, hf_model):
    info = interp.model_info(tiny_model)
    cap = interp.capture(tiny_model, PROMPT, names=["resid_mid", "neurons", "mlp_out"])
    hf = hf_model(info.arch)
    with torch.no_grad():
        for layer in range(info.n_layers):
            x = cap.resid(layer, "mid")
            if info.arch == "gpt2":
                block = hf.transformer.h[layer]
                neurons = block.mlp.act(block.mlp.c_fc(block.ln_2(x)))
                down = block.mlp.c_proj
            else:
                block = hf.model.layers[layer]
                normed = block.post_attention_layernorm(x)
                neurons = block.mlp.act_fn(block.mlp.gate_proj(normed)) * block.mlp.up_proj(normed)
                down = block.mlp.down_proj
            torch.testing.assert_close(cap.neurons(layer), neurons, atol=ATOL, rtol=0)
            torch.testing.assert_close(cap.mlp_out(layer), down(neurons), atol=ATOL, rtol=0)


def test_padding_does_not_change_real_positions(tiny_model):
    batch = interp.capture(tiny_model, PROMPTS, names="all")
    for row, prompt in enumerate(PROMPTS):
        alone = interp.capture(tiny_model, prompt, names="all")
        n = alone.tokens.shape[1]
        assert int(batch.last_positions[row]) == n - 1
        torch.testing.assert_close(batch.tokens[row, :n], alone.tokens[0])
        torch.testing.assert_close(batch.logits[row, :n], alone.logits[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(batch.last_logits[row], alone.logits[0, -1], atol=ATOL, rtol=0)
        for name in alone.hook_names:
            if name.endswith(("hook_pattern", "hook_attn_scores")):
                got, want = batch[name][row, :, :n, :n], alone[name][0]
                if name.endswith("hook_pattern"):
                    assert (batch[name][row, :, :, n:] == 0).all(), name
            else:
                got, want = batch[name][row, :n], alone[name][0]
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=name)


def test_cached_tensors_are_not_modified_later(tiny_model):
    first = interp.capture(tiny_model, PROMPTS, names="all")
    snapshot = {name: t.clone() for name, t in first.activations.items()}
    logits = first.logits.clone()
    second = interp.capture(tiny_model, PROMPTS, names="all")
    interp.capture(tiny_model, "Something else entirely", names="all")
    for name, tensor in first.activations.items():
        assert torch.equal(tensor, snapshot[name]), name
        assert torch.equal(tensor, second[name]), name
    assert torch.equal(first.logits, logits)


def test_capture_leaves_weights_alone(tiny_gpt2):
    before = {k: v.clone() for k, v in tiny_gpt2.state_dict().items()}
    interp.capture(tiny_gpt2, PROMPTS, names="all")
    after = tiny_gpt2.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unknown_alias_lists_the_valid_ones(tiny_gpt2):
    with pytest.raises(ValueError, match="names='residual'") as err:
        interp.capture(tiny_gpt2, PROMPT, names=["residual"])
    for alias in interp.ALIASES:
        assert alias in str(err.value)


def test_rotary_alias_on_learned_positions_model(tiny_gpt2):
    with pytest.raises(ValueError, match="names='rot_q' needs a model with rotary positions"):
        interp.capture(tiny_gpt2, PROMPT, names="rot_q")


def test_missing_hook_says_which_name_to_pass(tiny_gpt2):
    cap = interp.capture(tiny_gpt2, PROMPT, names="resid")
    with pytest.raises(interp.NotCapturedError, match=r"blocks.0.attn.hook_pattern was not captured.*'pattern'"):
        cap.pattern(0)
    with pytest.raises(KeyError, match="hook_embed"):
        cap["hook_embed"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda cap: cap.resid(7), r"layer=7, model has layers 0..1"),
        (lambda cap: cap.resid(-1), r"layer=-1, model has layers 0..1"),
        (lambda cap: cap.resid(0, "end"), r"where='end'"),
        (lambda cap: cap.pattern(0, head=4), r"head=4, model has heads 0..3"),
        (lambda cap: cap.neurons(2), r"layer=2"),
    ],
)
def test_bad_indices(tiny_gpt2, call, match):
    cap = interp.capture(tiny_gpt2, PROMPT, names="all")
    with pytest.raises(ValueError, match=match):
        call(cap)


def test_bad_prompt_raises_before_running(tiny_gpt2):
    with pytest.raises(ValueError, match="empty string"):
        interp.capture(tiny_gpt2, "", names="resid")
