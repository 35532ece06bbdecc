"""The forward pass of :func:`interp.capture`: activations kept, cast as they fire, handed to a callback, or written.

Each requested hook gets one forward hook on its hook point (the model's lock held, removed on exit) that
detaches the tensor, moves/casts it when ``device=``/``dtype=`` ask, and then keeps it, passes it to
``on_layer(name, tensor)``, or writes it to ``save_to/<hook name>.safetensors``. With a callback or a folder
nothing is kept: the tensor is released when the model is done with it, so memory is one layer's activations,
not all of them.

A folder is built in a temporary beside it and renamed into place when the forward pass has finished
(:func:`interp.core.files.atomic_dir`): a reader never sees half a capture. It holds one safetensors file per
hook, ``capture.safetensors`` (tokens, attention mask, logits) and ``capture.json`` (format, model, hook
order). :func:`interp.core.capturing.load_capture` reads it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.core.files import atomic_dir, check_can_write
from interp.core.hooks import hooked
from interp.core.model_info import ModelInfo
from interp.core.tokens import Tokenized

FORMAT = "interp.capture/1"
"""Value of ``format`` in a saved capture's ``capture.json``."""
MANIFEST, BATCH_FILE, SUFFIX = "capture.json", "capture.safetensors", ".safetensors"

OnLayer = Callable[[str, torch.Tensor], Any]
"""``on_layer(hook_name, tensor)``: called once per hook as it fires; the tensor is not kept afterwards."""


def run_streaming(
    model: Any,
    batch: Tokenized,
    names: Sequence[str],
    info: ModelInfo,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    on_layer: OnLayer | None = None,
    save_to: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass of ``model`` with a hook per name; returns ``(logits, kept activations)``.

    Activations are kept only when there is neither ``on_layer`` nor ``save_to``.

    Raises:
        FileExistsError: ``save_to`` exists (a file or a non-empty folder) and ``overwrite`` is False.
        ValueError: ``dtype`` is not a floating-point dtype.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype={dtype!r}; pass a floating-point torch dtype such as torch.bfloat16")
    if save_to is not None:
        check_can_write(save_to, overwrite)
    keep = on_layer is None and save_to is None
    kept: dict[str, torch.Tensor] = {}
    saved: dict[str, None] = {}  # hook names in the order they fired

    def cast(x: torch.Tensor) -> torch.Tensor:
        if device is None and dtype is None:
            return x.detach()
        return x.detach().to(device=device, dtype=dtype if x.is_floating_point() else None)

    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(atomic_dir(save_to)) if save_to is not None else None
        bar = stack.enter_context(tqdm(total=len(names), desc="capture", unit="hook", delay=2.0,
                                       leave=False)) if progress else None

        def make_hook(name: str) -> Callable[..., None]:
            def hook(tensor: Any, hook: Any) -> None:  # returns None: the model's own tensor flows on unchanged
                x = tensor[0] if isinstance(tensor, tuple) else tensor
                if not isinstance(x, torch.Tensor):
                    return
                x = cast(x)
                if keep:
                    kept[name] = x
                if folder is not None:
                    _save({name: x}, folder / (name + SUFFIX))
                    saved[name] = None
                if on_layer is not None:
                    on_layer(name, x)
                if bar is not None:
                    bar.update()

            return hook

        stack.enter_context(torch.no_grad())
        stack.enter_context(hooked(model, [(name, make_hook(name)) for name in names]))
        logits = cast(model(batch.tokens, attention_mask=batch.attention_mask))
        if folder is not None:
            _save({"tokens": batch.tokens, "attention_mask": batch.attention_mask, "logits": logits},
                  folder / BATCH_FILE)
            manifest = {"format": FORMAT, "model": info.name, "hooks": list(saved), "info": dataclasses.asdict(info)}
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return logits, kept


def read_folder(
    folder: str | os.PathLike[str], model: Any = None, names: Sequence[str] | None = None
) -> tuple[Tokenized, torch.Tensor, dict[str, torch.Tensor], ModelInfo]:
    """Read a capture saved with ``capture(..., save_to=folder)``.

    Args:
        folder: The folder ``save_to`` named.
        model: Optional; when given, the capture must come from a model of the same name and shapes.
        names: Hooks to read (default all that were saved); the others stay on disk.

    Returns:
        ``(batch, logits, activations by hook name, model info)``; :func:`interp.core.capturing.load_capture`
        wraps them in a :class:`interp.Capture`.

    Raises:
        FileNotFoundError: no saved capture there.
        ValueError: not a capture folder, a hook that was not saved, or a capture of another model.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"no saved capture in {folder} (no {MANIFEST}); write one with "
                                f"interp.capture(model, prompts, names, save_to={str(folder)!r})")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        info = ModelInfo(**manifest["info"]) if manifest["format"] == FORMAT else None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder / MANIFEST} is not a capture manifest ({err!r})") from None
    if info is None:
        raise ValueError(f"{folder / MANIFEST} has format {manifest['format']!r}, expected {FORMAT!r}")
    if model is not None:
        from interp.core.model_info import model_info

        theirs = model_info(model)
        for key in ("arch", "n_layers", "n_heads", "d_model", "d_vocab"):
            if getattr(theirs, key) != getattr(info, key):
                raise ValueError(f"this capture is of {info.name!r} ({key}={getattr(info, key)}), not of "
                                 f"{theirs.name!r} ({key}={getattr(theirs, key)})")
    saved = manifest["hooks"]
    wanted = saved if names is None else list(names)
    missing = [n for n in wanted if n not in saved]
    if missing:
        raise ValueError(f"hooks {missing} were not saved in {folder}; it holds {saved}")
    batch = load_file(str(folder / BATCH_FILE))
    acts = {name: load_file(str(folder / (name + SUFFIX)))[name] for name in wanted}
    return Tokenized(batch["tokens"], batch["attention_mask"]), batch["logits"], acts, info


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
