"""Logit lens: decode the residual stream after every layer through the model's own final norm and unembedding.

Lens layer ``0`` is the embedding (the input of block 0), lens layer ``l + 1`` the output of block ``l``;
the last lens layer is the model's final residual stream, so its decoding *is* the model's output
(tests assert this identity on LayerNorm and RMSNorm models). The final norm is the model's own module
(``model.ln_final``: LayerNorm or RMSNorm, with its gain and bias), applied unless
``apply_final_norm=False``; :attr:`LensResult.final_norm_applied` records which.

Memory: the full log-probabilities ``[layer batch pos vocab]`` (2.7 GB for GPT-2 small at 1024 tokens) are
never built unless asked for. The lens decodes one layer and one slice of positions at a time
(:mod:`interp.lens.scan`) and keeps top-k tokens, the target's log-probability and rank, and KL to the final
layer; :meth:`LensResult.full_logprobs` decodes a chosen slice, ``full=True`` everything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from interp.core.capturing import capture
from interp.core.hooks import hook_name, layer_names
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import Prompts, tokenize
from interp.lens.result import MAX_ELEMENTS, LensResult
from interp.lens.scan import TOP_K, Readout, scan
from interp.lens.targets import Target, resolve_positions, target_ids

__all__ = ["MAX_ELEMENTS", "LensResult", "Target", "logit_lens", "resolve_positions", "run_lens", "target_ids"]


@holds_model
def logit_lens(
    model: Any,
    prompt: Prompts,
    *,
    target: Target = None,
    positions: Sequence[int] | int | None = None,
    apply_final_norm: bool = True,
    max_elements: int = MAX_ELEMENTS,
    top_k: int = TOP_K,
    full: bool = False,
    chunk_size: int | None = None,
    progress: bool = True,
) -> LensResult:
    """Decode the residual stream after the embeddings and after every block with the model's unembedding.

    Only summaries are kept (top ``top_k`` tokens, the target's probability and rank, KL to the final layer),
    computed ``chunk_size`` positions at a time: memory is the residual stream plus a few ``[chunk vocab]``
    buffers, never ``[layer batch pos vocab]``. Time is one forward plus, per lens layer, one unembedding and
    one log-softmax.

    Args:
        model: A ``TransformerBridge``.
        prompt: A string, a list of strings (right-padded batch) or a token tensor.
        target: Token to follow across layers: a string that is exactly one token (``" Paris"``), an
            id, or one per prompt. A string of several tokens is an error (the message lists its
            pieces): silently taking its first token would report the probability of something else.
        positions: Positions to keep (ints, negative counts back from each prompt's last real token);
            default all. With a padded batch and the default, column ``-1`` is the last *column*, so
            pass ``positions=[-1]`` to follow each prompt's own last token.
        apply_final_norm: Apply the model's final norm before the unembedding (the standard logit lens).
        max_elements: Largest :attr:`LensResult.logprobs` (in floats) decoded when that property is read.
        top_k: Top tokens kept per layer and position (more are decoded on request by ``top_tokens``).
        full: Also materialise the full log-probabilities now (``[layer batch pos vocab]`` floats, whatever
            their size); otherwise :meth:`LensResult.full_logprobs` decodes a slice on request.
        chunk_size: Positions (summed over the batch) decoded at once; default so that one ``[chunk vocab]``
            buffer is 32 MiB.
        progress: Show tqdm progress bars over the forward's hooks, then over layers and chunks (each only
            once its work passes 2 seconds).

    Returns:
        A :class:`LensResult` with ``n_layers + 1`` lens layers.

    Raises:
        ValueError: bad prompts, a target that is not one token, positions out of range, a bad ``top_k``
            or ``chunk_size``.

    Examples:
        >>> lens = logit_lens(model, "The Eiffel Tower is located in the city of", target=" Paris")  # doctest: +SKIP
        >>> lens.rank()[:, 0, -1]  # doctest: +SKIP
    """
    return run_lens(model, prompt, None, target=target, positions=positions, apply_final_norm=apply_final_norm,
                    max_elements=max_elements, top_k=top_k, full=full, chunk_size=chunk_size, progress=progress)


def run_lens(
    model: Any,
    prompt: Prompts,
    translate: Callable[[torch.Tensor], torch.Tensor] | None,
    *,
    target: Target = None,
    positions: Sequence[int] | int | None = None,
    apply_final_norm: bool = True,
    max_elements: int = MAX_ELEMENTS,
    top_k: int = TOP_K,
    full: bool = False,
    chunk_size: int | None = None,
    progress: bool = True,
) -> LensResult:
    """Shared body of the logit and tuned lens: ``translate`` maps ``[layer ... d_model]`` residuals."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k={top_k!r}; keep at least 1 top token per layer and position")
    info = model_info(model)
    names = [hook_name("resid_pre", 0), *layer_names("resid_post", range(info.n_layers))]
    batch = tokenize(model, prompt)
    ids = None if target is None else target_ids(model.tokenizer, target, batch.tokens.shape[0], batch.tokens.device)
    cols = resolve_positions(positions, batch.attention_mask)
    slot = {name: i for i, name in enumerate(names)}
    kept: list[torch.Tensor] = []  # [layer batch pos d_model], filled layer by layer

    def keep(name: str, x: torch.Tensor) -> None:  # only the kept positions of each layer outlive the forward
        if not kept:
            kept.append(x.new_empty(len(names), *cols.shape, x.shape[-1]))
        kept[0][slot[name]] = x.gather(1, cols.to(x.device)[:, :, None].expand(-1, -1, x.shape[-1]))

    capture(model, batch, names=names, on_layer=keep, progress=progress)
    resid = kept[0]
    with torch.no_grad():
        if translate is not None:
            resid = translate(resid)

    decode = _readout(model, apply_final_norm)
    lens = "tuned" if translate is not None else "logit"
    summary = scan(resid, decode, info.d_vocab, k=top_k, target=ids, chunk_size=chunk_size, progress=progress,
                   desc=f"{lens} lens")
    tokens = batch.tokens.gather(1, cols)
    result = LensResult(
        resid=resid, decode=decode, tokens=tokens, positions=cols,
        str_tokens=[[model.tokenizer.decode([t]) for t in row] for row in tokens.tolist()], target=ids,
        layer_names=["embed", *map(str, range(info.n_layers))], final_norm_applied=apply_final_norm, lens=lens,
        tokenizer=model.tokenizer, model_name=info.name, summary=summary, max_elements=max_elements,
        chunk_size=chunk_size,
    )
    if full:
        result.logprobs_cache = result.full_logprobs()
    return result


def _readout(model: Any, apply_final_norm: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The lens's decoding: the model's final norm (or none), then its unembedding.

    A :class:`Readout` (KL without a pass over the vocabulary per layer) when the unembedding is a plain
    ``nn.Linear`` whose weight is loaded (the bridge's ``unembed`` only adds identity hook points around it),
    else a plain function.
    """
    norm = model.ln_final if apply_final_norm else _identity
    head = getattr(model.unembed, "original_component", None)
    # Gemma 2's output is cap * tanh(logit / cap), applied by the bridge after ``unembed``: the lens applies it
    # too, so its last layer is the model's output. That is not linear in the residual, so no fused KL then.
    softcap = model_info(model).final_softcap
    # A weight offloaded by accelerate (``device_map``) is a meta tensor outside its module's own calls.
    if isinstance(head, torch.nn.Linear) and head.weight.device.type != "meta" and not softcap:
        return Readout(norm, model.unembed, head.weight.detach())

    def decode(x: torch.Tensor) -> torch.Tensor:
        logits = model.unembed(norm(x))
        return torch.tanh(logits / softcap) * softcap if softcap else logits

    return decode


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
