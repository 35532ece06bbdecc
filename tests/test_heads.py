"""Head census: scores against slow per-head loops, read-only caches, planted heads, bad input."""

from __future__ import annotations

import planted_heads
import pytest
import torch

import interp
from interp.heads.census import TYPES, head_census
from interp.heads.induction import repeated_random_tokens

PROMPTS = ["The cat sat on the mat and the cat sat on the mat.", "One two three one two three", "Paris is in France"]


def slow_scores(model, tokens, mask, window=4, exclude_bos=False):
    """Each behaviour's attention mass, looping over layers, heads, rows, queries and keys."""
    _, cache = model.run_with_cache(tokens, attention_mask=mask)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    tok = tokens.tolist()

    def targets(kind, b, q):
        keys = [k for k in range(q + 1) if mask[b, k]]
        return {
            "previous_token": [k for k in keys if k == q - 1],
            "duplicate_token": [k for k in keys if k < q and tok[b][k] == tok[b][q]],
            "induction": [k for k in keys if k >= 1 and tok[b][k - 1] == tok[b][q]],
            "bos": [k for k in keys if k == 0],
            "self": [q],
            "local": [k for k in keys if 2 <= q - k <= window and k >= 1],
        }[kind]

    out = torch.full((len(TYPES), n_layers, n_heads), float("nan"))
    for t, kind in enumerate(TYPES):
        for layer in range(n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
            for head in range(n_heads):
                masses = []
                for b in range(tokens.shape[0]):
                    for q in range(1, tokens.shape[1]):
                        if not mask[b, q]:
                            continue
                        row = pattern[b, head, q].clone()
                        if exclude_bos:
                            row[0] = 0
                            row = row / row.sum()
                        keys = targets(kind, b, q)
                        if keys:
                            masses.append(float(row[keys].sum()))
                if masses:
                    out[t, layer, head] = sum(masses) / len(masses)
    return out


def slow_importance(model, tokens, mask):
    _, cache = model.run_with_cache(tokens, attention_mask=mask)

    def loss(logits):
        lp = logits.log_softmax(-1)
        terms = [-float(lp[b, p, tokens[b, p + 1]]) for b in range(tokens.shape[0])
                 for p in range(tokens.shape[1] - 1) if mask[b, p + 1]]
        return sum(terms) / len(terms)

    clean = loss(model(tokens, attention_mask=mask))
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    weight = mask.float()[:, :, None]
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        for head in range(model.cfg.n_heads):
            mean = (z[:, :, head] * weight).sum(0) / weight.sum(0)  # over real rows at each position

            def hook(act, hook, head=head, mean=mean):
                act = act.clone()
                act[:, :, head] = mean
                return act

            with torch.no_grad():
                logits = model.run_with_hooks(
                    tokens, attention_mask=mask, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]
                )
            out[layer, head] = loss(logits) - clean
    return out


def test_scores_and_importance_equal_slow_reference(tiny_model):
    census = head_census(tiny_model, PROMPTS)
    batch = interp.tokenize(tiny_model, PROMPTS)
    assert batch.attention_mask.sum(-1).unique().numel() > 1  # the batch really is padded
    with torch.no_grad():
        expected = slow_scores(tiny_model, batch.tokens, batch.attention_mask)
        importance = slow_importance(tiny_model, batch.tokens, batch.attention_mask)
    torch.testing.assert_close(census.scores, expected, atol=1e-5, rtol=0, equal_nan=True)
    torch.testing.assert_close(census.importance, importance, atol=1e-5, rtol=0)


def test_exclude_bos_matches_reference_and_leaves_cache_alone(tiny_gpt2):
    cap = interp.capture(tiny_gpt2, PROMPTS, names=["pattern", "z"])
    before = {name: t.clone() for name, t in cap.activations.items()}
    census = head_census(tiny_gpt2, cache=cap, exclude_bos=True)
    for name, t in cap.activations.items():
        assert torch.equal(t, before[name]), name
    with torch.no_grad():
        expected = slow_scores(tiny_gpt2, cap.tokens, cap.attention_mask, exclude_bos=True)
    torch.testing.assert_close(census.scores, expected, atol=1e-5, rtol=0, equal_nan=True)
    assert census.score("bos").abs().max() == 0


def test_labels_planted_heads(tmp_path):
    gen = torch.Generator().manual_seed(7)
    prev_head, induction_head = (int(i) for i in torch.randint(planted_heads.N_HEADS, (2,), generator=gen))
    model = interp.load(planted_heads.build(tmp_path, prev_head, induction_head), device="cpu")
    census = head_census(model, repeated_random_tokens(model, 15, 8, seed=5))
    assert census.labels[(0, prev_head)].split("+")[0] == "previous_token"
    assert census.labels[(1, induction_head)].split("+")[0] == "induction"
    assert census.score("previous_token")[0, prev_head] > 0.9
    assert census.importance[1, induction_head] > 0.3 and census.importance[0, prev_head] > 0.3
    others = [(layer, head) for layer in range(2) for head in range(4) if (layer, head) not in
              {(0, prev_head), (1, induction_head)}]
    assert all("induction" not in census.labels[h] and "previous" not in census.labels[h] for h in others)
    assert max(abs(float(census.importance[h])) for h in others) < 1e-4  # they write nothing


def test_default_prompts(tiny_gpt2):
    from interp.heads.census import default_census_tokens

    tokens = default_census_tokens(tiny_gpt2, seed=2)
    assert tokens.shape == (16, 31) and (tokens[:, 0] == 0).all()
    assert torch.equal(tokens[:, 1:16], tokens[:, 16:])  # every row is [BOS] + t + t
    census = head_census(tiny_gpt2, seed=2, importance=False)
    torch.testing.assert_close(census.scores, head_census(tiny_gpt2, tokens, importance=False).scores)


def test_outputs(tiny_gpt2):
    census = head_census(tiny_gpt2, PROMPTS, importance=False)
    assert census.importance is None and census.scores.shape == (len(TYPES), 2, 4)
    frame = census.to_frame()
    assert list(frame.columns) == ["layer", "head", "label", *TYPES, "importance"] and len(frame) == 8
    data = census.to_json()
    assert len(data["heads"]) == 8
    assert all(h["label"] == "other" or all(p in TYPES for p in h["label"].split("+")) for h in data["heads"])
    assert len(census.figure().data) == len(TYPES)
    with pytest.raises(ValueError, match="kind='nope'"):
        census.score("nope")


@pytest.mark.parametrize("prompts, kwargs, match", [
    (torch.zeros(0, 5, dtype=torch.long), {}, "shape"),
    ("word " * 40, {}, "n_ctx=32"),
    (PROMPTS, {"window": 1}, "window=1"),
    (PROMPTS, {"ablation": "resample"}, "ablation='resample'"),
])
def test_bad_input(tiny_gpt2, prompts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        head_census(tiny_gpt2, prompts, **kwargs)
