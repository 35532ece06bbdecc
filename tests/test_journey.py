"""The nine stages of the token's journey, each against an independent computation on the tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import interp
from interp import journey
from interp.generation import sampling_probs
from interp.journey.architecture import facts_from_config, facts_from_model
from interp.journey.positions import rope_parameters
from interp.journey.tokens import readable

PROMPT = "The cat sat on the mat and the dog sat on the log"


def full_capture(model, prompt=PROMPT):
    return interp.capture(model, prompt, names="all")


def lm_head(model) -> torch.Tensor:
    return model.original_model.get_output_embeddings().weight.detach()


def test_tokens_replay_bpe_to_the_tokenizers_own_pieces(tiny_model):
    stage = journey.token_merges(tiny_model, PROMPT)
    pieces = [p for word in stage.words for p in word.pieces]
    assert pieces == tiny_model.tokenizer.tokenize(PROMPT)
    assert stage.ids.tolist() == interp.tokenize(tiny_model, PROMPT).tokens[0].tolist()
    assert stage.ids[0] == tiny_model.tokenizer.bos_token_id
    for word in stage.words:
        assert list(word.steps[0]) == list(word.word) and "".join(word.pieces) == word.word
        assert len(word.steps) == len(word.merges) + 1
    assert len(stage.figure().data) == 2


def test_tokens_are_shown_readably_and_every_row_fits(tiny_model):
    stage = journey.token_merges(tiny_model, PROMPT)
    tokenizer = tiny_model.tokenizer
    # The readable form is the tokenizer's own decoding of the piece, with a space drawn as ␣.
    for word in stage.words:
        for piece in word.pieces:
            decoded = tokenizer.convert_tokens_to_string([piece])
            assert readable(piece, stage.byte_level) == decoded.replace(" ", "␣"), piece
    frame = stage.to_frame()
    assert len(frame) == len(stage.words) and not frame["path"].str.contains("Ġ").any()
    assert frame["word"].tolist()[1] == "␣" + PROMPT.split()[1]
    tokens = stage.tokens_frame()
    assert tokens["id"].tolist() == stage.ids.tolist()
    assert "".join(tokens["token"].tolist()[1:]) == PROMPT.replace(" ", "␣")  # after BOS, the text, spaces as ␣
    fig = stage.figure()
    assert list(fig.data[0].cells.values[1]) == stage.ids.tolist()  # every token is a row of the table
    header, row = fig.data[0].header.height, fig.data[0].cells.height
    assert fig.layout.height >= header + row * max(len(tokens), len(frame))  # tall enough for every row
    assert stage.byte_level and any("Ġ" in a.text for a in fig.layout.annotations)  # the legend explains Ġ
    long = journey.token_merges(tiny_model, PROMPT + " and the cat sat on the log")
    assert long.figure().layout.height > fig.layout.height


def test_embeddings_neighbours_and_analogy_match_cosine_on_hf_weights(tiny_gpt2):
    emb = tiny_gpt2.original_model.get_input_embeddings().weight.detach()
    unit = F.normalize(emb, dim=-1)
    # " Mary", " John", " and", " the", " sat" are single tokens of the tiny tokenizer.
    mary = tiny_gpt2.tokenizer.encode(" Mary", add_special_tokens=False)[0]
    sims = unit @ unit[mary]
    sims[mary] = -2
    result = journey.nearest_tokens(tiny_gpt2, "Mary", k=5)
    assert result.ids.tolist() == sims.topk(5).indices.tolist()
    a, b, c = (tiny_gpt2.tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Mary", " John", " and"))
    query = F.normalize(unit[a] - unit[b] + unit[c], dim=-1)
    sims = unit @ query
    sims[[a, b, c]] = -2
    result = interp.analogy(tiny_gpt2, "Mary", "John", "and", k=3)
    assert result.ids.tolist() == sims.topk(3).indices.tolist()
    torch.testing.assert_close(result.similarities, sims.topk(3).values, atol=1e-5, rtol=1e-5)
    score = journey.analogy_accuracy(tiny_gpt2, [("Mary", "John"), ("and", "the"), ("sat", "on")], k=5)
    assert score.n == 6 and 0 <= score.top1 <= score.topk <= 1
    assert journey.analogy_accuracy(tiny_gpt2, [("Mary", "John"), ("zqxj", "the")]).skipped == ["zqxj"]


@pytest.mark.parametrize("bad", ["zqxjwv", "", 10**6, -1])
def test_tokens_not_in_the_vocabulary_raise(tiny_gpt2, bad):
    with pytest.raises(ValueError, match="vocabulary|non-empty"):
        interp.analogy(tiny_gpt2, "Mary", bad, "John")


def test_learned_positions_are_cosine_similarities_of_wpe(tiny_gpt2):
    stage = journey.positions(tiny_gpt2, n_positions=10)
    wpe = F.normalize(tiny_gpt2.original_model.transformer.wpe.weight.detach()[:10], dim=-1)
    torch.testing.assert_close(stage.similarity, wpe @ wpe.T, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="n_positions=99"):
        journey.positions(tiny_gpt2, n_positions=99)


def test_rope_angles_follow_the_formula_and_match_the_model(tiny_llama):
    stage = journey.positions(tiny_llama)
    config = tiny_llama.original_model.config
    base = config.rope_parameters["rope_theta"]
    d = config.head_dim
    expected = torch.tensor(
        [[m * base ** (-2 * i / d) for i in range(d // 2)] for m in range(config.max_position_embeddings)]
    )
    torch.testing.assert_close(stage.angles, expected.float(), atol=1e-4, rtol=1e-5)
    assert rope_parameters(tiny_llama) == (base, d)
    # The model's own rotary tables (captured) are cos/sin of the same angles, repeated over the two halves.
    cap = interp.capture(tiny_llama, PROMPT, names=["rotary_emb.hook_cos", "rotary_emb.hook_sin"])
    cos, sin = cap["rotary_emb.hook_cos"][0], cap["rotary_emb.hook_sin"][0]
    n = cos.shape[0]
    torch.testing.assert_close(cos[:, : d // 2], stage.angles[:n].cos(), atol=1e-5, rtol=1e-5)
    # Rotating q = k = ones with those tables, q_m . k_n / |q|^2 depends only on m - n and is the curve.
    ones = torch.ones(d)
    rotate_half = lambda x: torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1)  # noqa: E731
    rotated = ones * cos + rotate_half(ones) * sin
    scores = rotated @ rotated.T / d
    for m in range(n):
        for k in range(m + 1):
            assert abs(float(scores[m, k]) - float(stage.relative_score[m - k])) < 1e-5


def test_attention_head_recomputes_the_models_pattern(tiny_model):
    cap = full_capture(tiny_model)
    info = interp.model_info(tiny_model)
    for head in range(info.n_heads):
        stage = journey.attention_head(tiny_model, PROMPT, layer=1, head=head, query=5)
        torch.testing.assert_close(stage.pattern, cap.pattern(1, head)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stage.z, cap.z(1)[0, 5, head], atol=1e-5, rtol=1e-5)
        assert stage.kv_head == head // (info.n_heads // info.n_kv_heads)
        assert torch.equal(stage.mask, torch.ones_like(stage.mask).tril())
        assert torch.allclose(stage.pattern.sum(-1), torch.ones(stage.pattern.shape[0]))
    with pytest.raises(ValueError, match="layer=5"):
        journey.attention_head(tiny_model, PROMPT, layer=5)
    with pytest.raises(ValueError, match="head=9"):
        journey.attention_head(tiny_model, PROMPT, layer=0, head=9)
    with pytest.raises(ValueError, match="query=99"):
        journey.attention_head(tiny_model, PROMPT, layer=0, query=99)


def test_all_heads_share_one_scale_and_show_gqa(tiny_model):
    stage = journey.attention_heads(tiny_model, PROMPT, layer=0)
    info = interp.model_info(tiny_model)
    assert stage.kv_heads == [h // (info.n_heads // info.n_kv_heads) for h in range(info.n_heads)]
    if info.is_gqa:
        assert stage.kv_heads == [0, 0, 1, 1]
    for head in range(info.n_heads):
        one = journey.attention_head(tiny_model, PROMPT, layer=0, head=head)
        torch.testing.assert_close(stage.patterns[head], one.pattern, atol=1e-5, rtol=1e-5)
    fig = stage.figure()
    assert len(fig.data) == info.n_heads and all(t.coloraxis == "coloraxis" for t in fig.data)
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 1)


def test_ffn_neurons_rebuild_the_mlp_output(tiny_model):
    layer, position = 1, 4
    stage = journey.top_neurons(tiny_model, PROMPT, layer=layer, position=position, k=5, n_tokens=3)
    cap = interp.capture(tiny_model, PROMPT, names=["neurons", "mlp_out"])
    acts = cap.neurons(layer)[0, position]
    torch.testing.assert_close(stage.activations, acts[stage.neurons])
    mlp = tiny_model.original_model.get_decoder().layers[layer].mlp if hasattr(
        tiny_model.original_model.get_decoder(), "layers") else tiny_model.original_model.transformer.h[layer].mlp
    if hasattr(mlp, "down_proj"):
        w_out, b_out = mlp.down_proj.weight.detach().T, torch.zeros(mlp.down_proj.out_features)
    else:  # GPT-2's Conv1D stores [d_mlp, d_model]
        w_out, b_out = mlp.c_proj.weight.detach(), mlp.c_proj.bias.detach()
    torch.testing.assert_close(acts @ w_out + b_out, cap.mlp_out(layer)[0, position], atol=1e-5, rtol=1e-4)
    strength = acts.abs() * w_out.norm(dim=-1)
    assert stage.neurons.tolist() == strength.topk(5).indices.tolist()
    n = int(stage.neurons[0])
    direct = acts[n] * w_out[n] @ lm_head(tiny_model).T
    assert stage.promoted_ids[0].tolist() == direct.topk(3).indices.tolist()


@pytest.mark.parametrize("by_head", [False, True])
def test_direct_logit_attributions_sum_to_the_logit_minus_biases(tiny_model, by_head):
    stage = journey.residual_stream(tiny_model, PROMPT, position=-1, by_head=by_head)
    tokens = interp.tokenize(tiny_model, PROMPT).tokens
    with torch.no_grad():
        logits = tiny_model.original_model(tokens).logits[0, -1]
    assert stage.token_id == int(logits.argmax())
    assert abs(stage.logit - float(logits[stage.token_id])) < 1e-4
    norm = tiny_model.original_model.get_decoder().norm if hasattr(
        tiny_model.original_model.get_decoder(), "norm") else tiny_model.original_model.transformer.ln_f
    bias = getattr(norm, "bias", None)
    expected_bias = 0.0 if bias is None else float(bias.detach() @ lm_head(tiny_model)[stage.token_id])
    assert abs(stage.bias_terms - expected_bias) < 1e-6
    assert abs(float(stage.attributions.sum()) + expected_bias - float(logits[stage.token_id])) < 1e-4
    info = interp.model_info(tiny_model)
    expected_parts = 1 + (info.positional == "learned") + info.n_layers * (
        (info.n_heads + 1 if by_head else 1) + 1)
    assert len(stage.labels) == len(stage.attributions) == expected_parts
    other = journey.residual_stream(tiny_model, PROMPT, position=2, token=" Mary")
    assert other.token_id == tiny_model.tokenizer.encode(" Mary", add_special_tokens=False)[0] and other.position == 2


def test_per_head_outputs_plus_bias_rebuild_the_attention_output(tiny_gpt2):
    stage = journey.residual_stream(tiny_gpt2, PROMPT, by_head=True)
    whole = journey.residual_stream(tiny_gpt2, PROMPT)
    attn_bias = tiny_gpt2.original_model.transformer.h[0].attn.c_proj.bias.detach()
    heads = sum(float(stage.attributions[stage.labels.index(f"L0.H{h}")]) for h in range(4))
    bias_part = float(stage.attributions[stage.labels.index("L0.attn_bias")])
    assert abs(heads + bias_part - float(whole.attributions[whole.labels.index("L0.attn")])) < 1e-5
    # The bias part is b_O through the frozen final norm; check it is b_O's and not a leftover of the heads.
    cap = interp.capture(tiny_gpt2, PROMPT, names=["ln_final.hook_scale"])
    ln = tiny_gpt2.original_model.transformer.ln_f
    scale = cap["ln_final.hook_scale"][0, -1]
    direct = ((attn_bias - attn_bias.mean()) / scale * ln.weight.detach()) @ lm_head(tiny_gpt2)[stage.token_id]
    assert abs(bias_part - float(direct)) < 1e-5


def test_architecture_rows_agree_with_model_info_and_config(tiny_model):
    tiny_model_dir = interp.model_info(tiny_model).name  # the checkpoint directory it was loaded from
    stage = journey.architecture(tiny_model, compare=[tiny_model_dir], public=True)
    loaded, from_config = stage.models[0], stage.models[1]
    info = interp.model_info(tiny_model)
    assert (loaded.n_layers, loaded.n_heads, loaded.n_kv_heads, loaded.d_mlp) == (
        info.n_layers, info.n_heads, info.n_kv_heads, info.d_mlp)
    for name in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head", "d_mlp", "d_vocab", "n_ctx", "norm",
                 "positional", "ffn"):
        assert getattr(from_config, name) == getattr(loaded, name), name
    assert loaded.n_params == sum(p.numel() for p in tiny_model.original_model.parameters())
    assert [m.name for m in stage.models[2:]] == [m.name for m in journey.PUBLIC_MODELS]
    assert facts_from_model(tiny_model).source == "loaded" and facts_from_config(tiny_model_dir).source == "config.json"
    assert len(stage.to_frame()) == 2 + len(journey.PUBLIC_MODELS)


def test_run_computes_all_nine_stages_from_one_capture(tiny_model, monkeypatch):
    import interp.journey.all_stages as all_stages

    calls = []

    real = all_stages.capture

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(all_stages, "capture", counting)
    result = journey.run(tiny_model, PROMPT, layer=1, head=2, analogy_words=("Mary", "John", "and"), top_k=5,
                         compare=[])
    assert len(calls) == 1
    one = journey.attention_head(tiny_model, PROMPT, layer=1, head=2)
    torch.testing.assert_close(result.attention.pattern, one.pattern)
    tokens = interp.tokenize(tiny_model, PROMPT).tokens
    with torch.no_grad():
        logits = tiny_model.original_model(tokens).logits[0, -1]
    torch.testing.assert_close(result.output.probs, sampling_probs(logits, 1.0, 5, None), atol=1e-6, rtol=1e-5)
    figures = result.figures()
    assert set(figures) == {"tokens", "embeddings", "analogy", "positions", "attention", "heads", "ffn", "residual",
                            "output", "architecture"}
    assert all(hasattr(f, "to_json") for f in figures.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ref-gpt2", "ref-llama"])
def test_reference_models_journey_and_speculative_greedy(name):
    model = interp.load(name, device="cpu")
    prompt = "The Eiffel Tower is located in the city of"
    result = journey.run(model, prompt, layer=1, head=0, analogy_words=("king", "man", "woman"))
    stage = journey.residual_stream(model, prompt, by_head=True)
    assert abs(float(stage.attributions.sum()) + stage.bias_terms - stage.logit) < 1e-4
    assert result.output.tokenizer.decode([int(result.output.logits.argmax())]) == " Paris"
    other = interp.load("ref-llama" if name == "ref-gpt2" else "ref-gpt2", device="cpu")
    spec = interp.speculative_generate(model, other, prompt, max_new_tokens=16, temperature=0, stop_at_eos=False)
    plain = interp.generate(model, prompt, max_new_tokens=16, temperature=0, stop_at_eos=False)
    assert spec.new_tokens.tolist() == plain.new_tokens.tolist()
