"""interp.tokenize and friends: right padding, BOS handling and input validation."""

from __future__ import annotations

import pytest
import torch

import interp


def test_single_prompt_gets_bos_and_full_mask(tiny_model):
    tokens, mask = interp.tokenize(tiny_model, "The cat sat")
    bos = tiny_model.tokenizer.bos_token_id
    expected = [bos, *tiny_model.tokenizer.encode("The cat sat", add_special_tokens=False)]
    assert tokens.tolist() == [expected]
    assert tokens.dtype == torch.long and mask.tolist() == [[1] * len(expected)]


def test_list_is_right_padded(tiny_gpt2):
    tokens, mask = interp.tokenize(tiny_gpt2, ["The cat", "The cat sat on the mat"])
    short = interp.tokenize(tiny_gpt2, "The cat").tokens[0]
    n = short.shape[0]
    assert tokens[0, :n].tolist() == short.tolist()
    assert mask[0].tolist() == [1] * n + [0] * (tokens.shape[1] - n)
    assert (tokens[0, n:] == tiny_gpt2.tokenizer.pad_token_id).all()
    assert mask[1].all()


def test_prepend_bos_override(tiny_gpt2):
    tokens = interp.tokenize(tiny_gpt2, "The cat", prepend_bos=False).tokens
    assert tokens[0].tolist() == tiny_gpt2.tokenizer.encode("The cat", add_special_tokens=False)


def test_token_tensor_passes_through(tiny_gpt2):
    ids = torch.tensor([5, 6, 7])
    tokens, mask = interp.tokenize(tiny_gpt2, ids)
    assert tokens.tolist() == [[5, 6, 7]] and mask.tolist() == [[1, 1, 1]]


def test_tokenized_passes_through(tiny_gpt2):
    batch = interp.tokenize(tiny_gpt2, ["a", "the cat"])
    again = interp.tokenize(tiny_gpt2, batch)
    assert torch.equal(again.tokens, batch.tokens) and torch.equal(again.attention_mask, batch.attention_mask)


@pytest.mark.parametrize(
    ("prompts", "match"),
    [
        ("", "empty string"),
        (["fine", ""], "prompt 1 is the empty string"),
        (" \t\n", r"prompt 0 is only whitespace \(' \\t\\n'\)"),
        (["fine", "\u3000\u00a0"], "prompt 1 is only whitespace"),
        ([], r"prompts=\[\] is empty"),
        ("the cat " * 40, r"n_ctx=32"),
        (torch.tensor([[1.0, 2.0]]), "torch.float32"),
        (torch.tensor([[1, 300]]), r"token id 300 .* \[0, 300\)"),
        (torch.tensor([[-1, 2]]), r"token id -1"),
        (torch.zeros(1, 2, 3, dtype=torch.long), r"shape \(1, 2, 3\)"),
        (torch.tensor(3), r"shape \(\)"),
        (torch.zeros(1, 0, dtype=torch.long), r"shape \(1, 0\)"),
        (torch.zeros(1, 33, dtype=torch.long), "33 positions.*n_ctx=32"),
    ],
)
def test_bad_prompts_raise_value_error_naming_the_value(tiny_gpt2, prompts, match):
    with pytest.raises(ValueError, match=match):
        interp.tokenize(tiny_gpt2, prompts)


def test_non_string_list_is_a_type_error(tiny_gpt2):
    with pytest.raises(TypeError, match="prompts"):
        interp.tokenize(tiny_gpt2, ["ok", 3])


def test_str_tokens_keeps_layout(tiny_gpt2):
    tokens = interp.tokenize(tiny_gpt2, ["The cat", "sat"]).tokens
    rows = interp.str_tokens(tiny_gpt2, tokens)
    assert len(rows) == 2 and all(len(r) == tokens.shape[1] for r in rows)
    n = int(interp.tokenize(tiny_gpt2, "The cat").tokens.shape[1])
    assert rows[0][0] == "<|endoftext|>" and "".join(rows[0][1:n]) == "The cat"
    assert interp.str_tokens(tiny_gpt2, tokens[0]) == rows[0]


def test_to_single_token(tiny_gpt2):
    ids = tiny_gpt2.tokenizer.encode(" the", add_special_tokens=False)
    assert len(ids) == 1
    assert interp.to_single_token(tiny_gpt2, " the") == ids[0]
    with pytest.raises(ValueError, match="text='The Eiffel Tower' is [0-9]+ tokens"):
        interp.to_single_token(tiny_gpt2, "The Eiffel Tower")
