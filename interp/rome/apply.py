"""ROME: rewrite one fact with a rank-one update of one MLP output projection (Meng et al. 2022).

An edit

1. averages the key ``k*`` (the projection's input at the subject's last token) over the prompt preceded by short
   prefixes sampled from the model, and solves ``C^-1 k*`` (:mod:`interp.rome.keys`);
2. optimises a change ``delta`` of the value so that the target becomes likely across the prefixed prompts,
   ``v* = W k* + b + delta`` (:mod:`interp.rome.value`);
3. applies ``W += (v* - W k* - b) (C^-1 k*)^T / ((C^-1 k*)^T k*)``, where ``C = E[k k^T]`` over reference-world
   text. The same averaged ``k*`` appears in the numerator and the denominator, so the edited layer maps ``k*`` to
   exactly ``v*`` (the original code used the unprefixed key in the denominator, a known cause of broken edits).

The edit goes into the Hugging Face module the bridge runs (``model.blocks[L].mlp.out.original_component``): the
bridge holds no copy of it, and if its weights were processed (folded/centred) they were loaded into that same
module, so the forward pass sees the edit either way. Undo restores a saved copy of the weight, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import save_file

from interp.core.files import atomic_path, check_can_write
from interp.core.hooks import moe_layers
from interp.core.locking import holds_model, holds_models, model_lock
from interp.core.model_info import check_layer, model_info
from interp.core.tokens import tokenize
from interp.rome.config import KEY_CONTEXTS, RomeConfig
from interp.rome.keys import fingerprint, is_conv1d, mean_key, projection, solve_stats
from interp.rome.layers import choose_layer
from interp.rome.value import contexts, optimise_delta
from interp.tracing import subject_span


@dataclass(eq=False)
class Edit:
    """A rank-one change ``right left^T`` of block ``layer``'s MLP output projection, and how to undo it."""

    layer: int
    """Block whose MLP output projection is edited."""
    left: Float[torch.Tensor, " d_mlp"]
    """Key-side vector ``C^-1 k*``."""
    right: Float[torch.Tensor, " d_model"]
    """Value-side vector ``(v* - W k* - b) / (left . k*)``."""
    key: Float[torch.Tensor, " d_mlp"]
    """The averaged key ``k*``."""
    value: Float[torch.Tensor, " d_model"]
    """The target MLP output ``v*`` (bias included)."""
    request: dict[str, str]
    """``prompt``, ``subject``, ``target`` (and ``model``, what the edit was computed on)."""
    fingerprint: str
    """Hash of the model the edit was made for (MLP output projections excluded, see :func:`fingerprint`)."""
    _module: Any = field(default=None, repr=False)
    _saved: torch.Tensor | None = field(default=None, repr=False)
    _lock: Any = field(default=None, repr=False)

    @property
    def applied(self) -> bool:
        """Whether the edit is in a model's weights now."""
        return self._saved is not None

    def delta(self) -> Float[torch.Tensor, "d_model d_mlp"]:
        """The weight change in ``nn.Linear`` layout (``[d_model, d_mlp]``)."""
        return torch.outer(self.right, self.left)

    @holds_models("model")
    def apply(self, model: Any) -> Edit:
        """Add the update to ``model``'s weights in place (for every thread, until :meth:`undo`).

        Raises:
            ValueError: the edit is already applied, or ``model`` is not the model it was made for.
        """
        if self.applied:
            raise ValueError(f"this edit of layer {self.layer} is already applied; undo() it first")
        info = model_info(model)
        check_layer(info, self.layer)
        shape_differs = (self.left.numel(), self.right.numel()) != (info.d_mlp, info.d_model)
        if shape_differs or fingerprint(model) != self.fingerprint:
            raise ValueError(
                f"edit made for model {self.request.get('model')!r} (fingerprint {self.fingerprint[:12]}) does not "
                f"match {info.name!r} (fingerprint {fingerprint(model)[:12]}); refusing to apply it"
            )
        module = projection(model, self.layer)
        weight = module.weight
        delta = self.delta().to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self._saved = weight.detach().clone()
            weight.add_(delta.T if is_conv1d(module) else delta)
        self._module, self._lock = module, model_lock(model)
        _stack(module).append(self)
        return self

    def undo(self) -> None:
        """Restore the weights as they were before :meth:`apply`, bit for bit.

        Raises:
            ValueError: the edit is not applied, or a later edit of the same layer is still applied
                (undo edits in reverse order).
        """
        if not self.applied:
            raise ValueError(f"this edit of layer {self.layer} is not applied")
        with self._lock:
            stack = _stack(self._module)
            if stack[-1] is not self:
                raise ValueError(
                    f"a later edit of layer {self.layer} is still applied; undo edits of one layer in reverse order"
                )
            with torch.no_grad():
                self._module.weight.copy_(self._saved)
            stack.pop()
            self._saved, self._module, self._lock = None, None, None

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the edit to a safetensors file (vectors plus request, layer and model fingerprint).

        The file is written through a temporary and a rename, so it is never left half-written.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        check_can_write(path, overwrite)
        tensors = {k: getattr(self, k).detach().float().cpu().contiguous() for k in ("left", "right", "key", "value")}
        meta = {"layer": str(self.layer), "request": json.dumps(self.request), "fingerprint": self.fingerprint}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    def to_dict(self) -> dict[str, Any]:
        """Layer, request and the norms of the update's vectors, for printing and JSON."""
        return {"layer": self.layer, **self.request, "delta_norm": float(self.left.norm() * self.right.norm()),
                "value_norm": float(self.value.norm()), "applied": self.applied}


def load_edit(path: str | os.PathLike[str]) -> Edit:
    """Read an edit written by :meth:`Edit.save`; apply it with ``.apply(model)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an edit.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no edit file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in ("left", "right", "key", "value")}
        return Edit(layer=int(meta["layer"]), request=json.loads(meta["request"]), fingerprint=meta["fingerprint"],
                    **tensors)
    except Exception as err:  # noqa: BLE001  # safetensors raises its own error type (truncated, not safetensors)
        raise ValueError(f"{path} is not an edit file written by Edit.save ({type(err).__name__}: {err})") from None


@holds_model
def edit(
    model: Any,
    *,
    prompt: str,
    subject: str,
    target: str,
    layer: int | None = None,
    config: RomeConfig | None = None,
    stats_texts: list[str] | None = None,
    progress: bool = True,
) -> Edit:
    """Rewrite the fact ``prompt.format(subject) -> target`` in ``model``'s weights, in place.

    The edit changes the model for every thread that uses it until ``.undo()``; :func:`edited` keeps it to
    one ``with`` block, during which other threads wait for the model.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: The prompt with ``{}`` where the subject goes, e.g. ``"{} is located in the city of"``.
        subject: The subject, e.g. ``"the Eiffel Tower"``.
        target: The new answer, any number of tokens, usually with a leading space (``" Rome"``).
        layer: Block to edit; ``None`` picks the block whose MLP output at the subject's last token has the
            largest indirect effect in causal traces (:func:`choose_layer`).
        config: Hyperparameters (:class:`RomeConfig`); its ``None`` fields (steps, prefix count, key-statistics
            tokens) are sized for the model (:meth:`RomeConfig.sized`, :mod:`interp.rome.sizing`): the reference
            models keep the values they were tuned with, larger models get fewer steps and prefixes.
        stats_texts: Texts for the key statistics instead of reference-world text (not cached).
        progress: Show progress bars for the long phases: the layer choice's trace, the key statistics (when not
            cached) and the value optimisation.

    Returns:
        The applied :class:`Edit`; ``edit.undo()`` restores the model.

    Raises:
        ValueError: a prompt without exactly one ``{}``, an empty subject or target, a target the model already
            answers, a layer out of range, or the last layer (when the subject is not at the end of the prompt, the
            last block's MLP output there never reaches the prediction). The model is untouched then.
        NotImplementedError: the block's feed-forward is a routed mixture of experts (Mixtral, Qwen-MoE: the
            message names the architecture), or its MLP output projection is offloaded by accelerate
            (``device_map`` with disk or CPU offload: the message says "offloaded" and names the weight).

    Examples:
        >>> e = edit(  # doctest: +SKIP
        ...     model, prompt="{} is located in the city of", subject="the Eiffel Tower", target=" Rome"
        ... )
        >>> e.undo()  # doctest: +SKIP
    """
    config = (config or RomeConfig()).sized(model)
    if config.key_context not in KEY_CONTEXTS:
        raise ValueError(f"key_context={config.key_context!r}; valid values are {', '.join(KEY_CONTEXTS)}")
    info = model_info(model)
    target_ids = check_request(model, prompt, subject, target)
    if layer is not None:
        projection(model, check_layer(info, layer))  # refuse experts and offloaded weights before any work
    elif len(moe_layers(model)) == info.n_layers:
        projection(model, 0)  # every block is a mixture of experts: nothing to choose from
    layer = choose_layer(model, prompt, subject, progress=progress) if layer is None else layer
    projection(model, layer)
    text = prompt.replace("{}", subject)
    if layer == info.n_layers - 1 and subject_span(model, text, subject)[1] < len(tokenize(model, text).tokens[0]):
        raise ValueError(
            f"layer={layer} is the last block: its MLP output at the subject cannot reach the prediction at the end "
            f"of the prompt; use a layer in 0..{info.n_layers - 2}"
        )
    texts = contexts(model, text, len(target_ids), config)
    alone = [t[: len(t) - len(text)] + subject for t in texts]  # same prefixes, the subject alone behind them
    key_texts = {"subject": alone, "prompt": texts, "both": texts + alone}[config.key_context]
    key = mean_key(model, layer, key_texts, subject)
    module = projection(model, layer)
    with torch.no_grad():
        base = module(key.to(module.weight.dtype)).float()
    left = solve_stats(model, layer, key, config, stats_texts, progress=progress)
    delta = optimise_delta(model, layer, texts, subject, target_ids, base.norm(), config, left / (left @ key),
                           progress=progress)
    right = delta / (left @ key)
    request = {"prompt": prompt, "subject": subject, "target": target, "model": info.name}
    result = Edit(layer=layer, left=left, right=right, key=key, value=base + delta, request=request,
                  fingerprint=fingerprint(model))
    return result.apply(model)


@contextlib.contextmanager
def edited(model: Any, **kwargs: Any) -> Iterator[Edit]:
    """Apply an :func:`edit` for the duration of a ``with`` block; undone on exit, exceptions included.

    The block holds the model's lock: other threads see the unedited model before and after it, and wait
    while it runs (a bare :func:`edit` instead changes the model for every thread until ``.undo()``).

    Examples:
        >>> with edited(model, prompt="{} is in the city of", subject="the Louvre", target=" Rome"):  # doctest: +SKIP
        ...     pass
    """
    with model_lock(model):
        change = edit(model, **kwargs)
        try:
            yield change
        finally:
            change.undo()


def check_request(model: Any, prompt: str, subject: str, target: str) -> list[int]:
    """Validate an edit request before anything is computed; return the target's token ids.

    Raises:
        ValueError: naming what is wrong (see :func:`edit`).
    """
    if not isinstance(prompt, str) or prompt.count("{}") != 1:
        hint = ""
        if isinstance(prompt, str) and isinstance(subject, str) and subject and subject in prompt:
            hint = f"; write the subject as {{}}: {prompt.replace(subject, '{}', 1)!r}"
        elif isinstance(prompt, str) and "{}" not in prompt:
            hint = f"; the subject {subject!r} is not in the prompt either"
        raise ValueError(f"prompt={prompt!r} must contain exactly one {{}} where the subject goes{hint}")
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError(f"subject={subject!r} is empty; name the subject whose fact is edited")
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target={target!r} is empty; give the new answer, e.g. ' Rome'")
    subject_span(model, prompt.replace("{}", subject), subject)
    target_ids = model.tokenizer.encode(target, add_special_tokens=False)
    if not target_ids:
        raise ValueError(f"target={target!r} encodes to no token; give the new answer, e.g. ' Rome'")
    prompt_ids = tokenize(model, prompt.replace("{}", subject)).tokens[0].tolist()
    n_ctx = model_info(model).n_ctx
    if len(prompt_ids) + len(target_ids) > n_ctx:
        # GPT-2 fails deep inside its position embedding; RoPE models run silently past their trained context.
        raise ValueError(
            f"prompt plus target is {len(prompt_ids) + len(target_ids)} tokens ({len(prompt_ids)} prompt, "
            f"{len(target_ids)} target); "
            f"the model's context window is n_ctx={n_ctx} tokens"
        )
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + target_ids[:-1]], device=model_info(model).device))
    predicted = logits[0, len(prompt_ids) - 1 :].argmax(-1).tolist()
    if predicted == target_ids:
        raise ValueError(f"target={target!r} is already the model's answer to {prompt.replace('{}', subject)!r}")
    return target_ids


# Applied edits per projection module, oldest first: an edit can be undone only while it is the newest one,
# since its saved weight holds every edit applied before it.
_STACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _stack(module: torch.nn.Module) -> list[Edit]:
    return _STACKS.setdefault(module, [])

