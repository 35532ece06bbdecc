"""The value side of a ROME edit: optimise the change ``delta`` of the MLP output, ``v* = W k* + b + delta``.

``delta`` is optimised so that the target becomes likely across the prompt and its prefixed copies
(:func:`contexts`), with a KL term keeping ``"{subject} is a"`` as it was, weight decay, and a norm clamp
(``|delta| <= clamp_norm * |W k* + b|``). The change is applied during optimisation as the edit will apply it:
``(C^-1 k*)^T k / ((C^-1 k*)^T k*) * delta`` at every position with key ``k``, so the optimised value is what the
edited model produces on every prompt, the bare one included (the original adds ``delta`` at the subject's last token
only, and the edit then reaches a prompt whose key differs from ``k*`` with part of that strength).
"""

from __future__ import annotations

from typing import Any

import torch
from tqdm.auto import tqdm

from interp.core.capturing import capture
from interp.core.hooks import hook_name, hooked
from interp.core.model_info import model_info
from interp.core.tokens import pad_id, pad_right, tokenize
from interp.rome.config import KL_PROMPT, RomeConfig
from interp.rome.keys import prefixes


def contexts(model: Any, text: str, n_target: int, config: RomeConfig) -> list[str]:
    """The prompt alone and behind each of :func:`prefixes`; prefixes are cut (from the left) so every row fits.

    Args:
        model: A ``TransformerBridge``.
        text: The prompt with the subject filled in.
        n_target: Target tokens that will follow the prompt (they need room in the context window too).
        config: Gives the prefixes and the separator.
    """
    info = model_info(model)
    room = info.n_ctx - len(tokenize(model, text).tokens[0]) - n_target - len(model.tokenizer.encode(config.prefix_sep))
    out = [text]
    for prefix in prefixes(model, config):
        ids = model.tokenizer.encode(prefix, add_special_tokens=False)
        if room > 0:
            out.append(model.tokenizer.decode(ids[-room:]) + config.prefix_sep + text)
    return out


def optimise_delta(
    model: Any, layer: int, texts: list[str], subject: str, target_ids: list[int], base_norm: torch.Tensor,
    config: RomeConfig, reader: torch.Tensor, *, progress: bool = True,
) -> torch.Tensor:
    """Optimise ``delta`` through the rank-one map the edit will apply.

    The edited projection adds ``(reader . k) delta`` to the MLP output wherever its input is ``k``, with
    ``reader = C^-1 k* / (k*^T C^-1 k*)``. The optimisation adds exactly that, at every position of every row, so the
    value found is the one the edited model produces: a prompt whose own key reads only part of ``k*`` (the bare
    prompt versus the prefixed ones) is optimised at the strength it will actually get.

    Args:
        model: A ``TransformerBridge``.
        layer: Block whose MLP output is changed.
        texts: The prompts (from :func:`contexts`; the first is the bare prompt).
        subject: The subject, for the KL prompt.
        target_ids: Token ids of the new answer.
        base_norm: ``|W k* + b|``, the scale of weight decay and of the clamp.
        config: Steps (``None``: sized for the model, :meth:`RomeConfig.sized`), learning rate, loss weights, clamp
            and early stop.
        reader: ``C^-1 k* / (k*^T C^-1 k*)``.
        progress: Show a progress bar over the steps (it stops early once the target is reached).

    Returns:
        ``delta``, ``[d_model]``, float32.
    """
    info = model_info(model)
    config = config.sized(model)
    kl_text = KL_PROMPT.replace("{}", subject)
    prompt_rows = [tokenize(model, t).tokens[0].tolist() for t in texts]
    rows = [r + target_ids[:-1] for r in prompt_rows] + [tokenize(model, kl_text).tokens[0].tolist()]
    tokens = pad_right(rows, pad_id(model.tokenizer), info.device).tokens
    keys = hook_name("neurons", layer)  # the projection's input does not depend on delta: read it once
    where = (capture(model, tokens, names=[keys])[keys].float() @ reader.to(info.device).float())[..., None]
    n_t = len(target_ids)
    # Row i predicts target token j at position len(prompt_i) - 1 + j.
    pred_pos = torch.tensor([[len(r) - 1 + j for j in range(n_t)] for r in prompt_rows], device=info.device)
    target = torch.tensor(target_ids, device=info.device).expand(len(prompt_rows), n_t)
    kl_row, kl_pos = len(rows) - 1, len(rows[-1]) - 1

    delta = torch.zeros(info.d_model, device=info.device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=config.lr)
    mlp_out = hook_name("mlp_out", layer)

    def add_delta(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x + where.to(x.dtype) * delta.to(x.dtype)

    init_logp = None
    # The bar closes when the loop ends, by early stopping or an error too (tqdm closes its iterator then).
    for _ in tqdm(range(config.steps), desc=f"ROME value, layer {layer}", leave=False, disable=not progress):
        with hooked(model, [(mlp_out, add_delta)]):
            logits = model(tokens)
        # Only the positions the loss reads are normalised: a log-softmax over every position of every row (and
        # its backward) would cost [rows, pos, vocab] twice per step for nothing.
        logp = logits[torch.arange(len(prompt_rows), device=info.device)[:, None], pred_pos].float().log_softmax(-1)
        per_row = -logp.gather(-1, target[..., None]).mean((1, 2))
        nll = per_row.mean()  # every row predicts the same number of target tokens
        kl_logp = logits[kl_row, kl_pos].float().log_softmax(-1)
        if init_logp is None:
            init_logp = kl_logp.detach()
        kl = torch.sum(init_logp.exp() * (init_logp - kl_logp))
        decay = delta.norm() ** 2 / base_norm**2
        if nll.item() < config.early_stop and per_row[0].item() < config.early_stop:  # row 0: the bare prompt
            break
        loss = nll + config.kl_factor * kl + config.weight_decay * decay
        (grad,) = torch.autograd.grad(loss, [delta])
        delta.grad = grad
        optimiser.step()
        with torch.no_grad():
            limit = config.clamp_norm * base_norm
            if delta.norm() > limit:
                delta.mul_(limit / delta.norm())
    return delta.detach().float()
