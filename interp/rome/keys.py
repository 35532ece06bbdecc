"""The key side of a ROME edit: the edited projection, its averaged key ``k*`` and ``u = C^-1 k*``.

The MLP output projection ``W`` of block ``layer`` (GPT-2 ``c_proj``, a ``Conv1D`` with weight ``[d_mlp, d_model]``;
Llama ``down_proj``, an ``nn.Linear`` with weight ``[d_model, d_mlp]``) is read as a key-value memory: the key ``k``
is its input at the subject's last token, the value ``W k`` what it writes to the residual stream. The edit averages
the key ``k*`` over the prompt preceded by short prefixes sampled from the model (:func:`prefixes`,
:func:`mean_key`), and reads it through ``C = E[k k^T]`` over reference-world text (:func:`key_stats`,
:func:`solve_stats`). ``C`` is cached on disk per model, keyed by :func:`fingerprint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.core.capturing import capture
from interp.core.files import atomic_path
from interp.core.hooks import hook_name, hooked, moe_layers
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import Tokenized, pad_id, pad_right
from interp.generation.decoding import generate
from interp.heads.sizing import PASS_BYTES, STATS_FLOPS, budget_tokens, rows_per_pass
from interp.reference.world_text import world_tokens
from interp.rome.config import RomeConfig
from interp.tracing import subject_span


def projection(model: Any, layer: int) -> torch.nn.Module:
    """The Hugging Face module the bridge runs as block ``layer``'s MLP output projection.

    Raises:
        NotImplementedError: block ``layer``'s feed-forward is a routed mixture of experts, or the projection's
            weight is offloaded by accelerate (it lives on disk or in a CPU map, not in the module).
        TypeError: the module is neither ``nn.Linear`` nor GPT-2's ``Conv1D``.
    """
    if layer in moe_layers(model):
        info = model_info(model)
        raise NotImplementedError(
            f"ROME cannot edit block {layer} of {info.display_name} (architecture {info.arch}): its feed-forward is a "
            "routed mixture of experts with no single MLP output projection; an edit would need each expert's key "
            "statistics and the router's weight at the subject, which interp does not compute"
        )
    module = _projection_module(model, layer)
    if not (isinstance(module, torch.nn.Linear) or is_conv1d(module)):
        raise TypeError(f"block {layer}'s MLP output is a {type(module).__name__}; ROME supports Linear and Conv1D")
    if module.weight.device.type == "meta":
        raise NotImplementedError(
            f"ROME cannot edit block {layer}: its MLP output projection weight {_param_name(model, module)} is "
            "offloaded by accelerate (device_map put it on disk or in CPU offload; the module holds only a meta "
            "tensor), and writing through the offload map would change the checkpoint's own files; load the "
            "model so that this block's weights stay on a device"
        )
    return module


def _projection_module(model: Any, layer: int) -> Any:
    """The module under block ``layer``'s ``mlp.out`` bridge, or ``None`` where there is none (experts)."""
    bridge = getattr(model.blocks[layer].mlp, "out", None)
    return getattr(bridge, "original_component", None) or getattr(bridge, "_original_component", None)


def _param_name(model: Any, module: torch.nn.Module) -> str:
    """The Hugging Face name of ``module``'s weight, as in the checkpoint (``"?"`` if the model does not list it)."""
    hf_model = getattr(model, "original_model", model)
    name = next((name for name, p in hf_model.named_parameters() if p is module.weight), "?")
    return name.replace("._original_component", "")  # the bridge wraps each module it replaces


def is_conv1d(module: Any) -> bool:
    """Whether ``module`` is GPT-2's ``Conv1D``, whose weight is ``[d_in, d_out]`` (transposed from ``nn.Linear``)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def fingerprint(model: Any) -> str:
    """Hash of a model's shape and weights, MLP output projections excluded (edits do not change it).

    Each tensor contributes at most 4096 evenly spaced entries, so large models hash quickly. A weight offloaded by
    accelerate (a meta tensor in the module) contributes its name and shape only.
    """
    info = model_info(model)
    modules = [_projection_module(model, L) for L in range(info.n_layers)]
    skip = {id(p) for m in modules if m is not None for p in m.parameters()}
    digest = hashlib.sha256(f"{info.arch}:{info.n_layers}:{info.d_model}:{info.d_mlp}:{info.d_vocab}".encode())
    for name, p in model.named_parameters():
        if id(p) in skip:
            continue
        digest.update(name.encode())
        if p.device.type == "meta":
            digest.update(str(tuple(p.shape)).encode())
            continue
        flat = p.detach().flatten()
        digest.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    """``$INTERP_CACHE/rome_stats`` (default ``~/.cache/interp/rome_stats``): key statistics and layer profiles."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp")) / "rome_stats"


def stats_path(model: Any, layer: int, n: int) -> Path:
    """Cache file of the key statistics of (model, layer, sample count).

    The folder is ``$INTERP_CACHE/rome_stats`` (default ``~/.cache/interp/rome_stats``).
    """
    return cache_dir() / f"{fingerprint(model)[:16]}-layer{layer}-n{n}.safetensors"


def stats_length(model: Any) -> int:
    """Tokens per default key-statistics sequence: the context, cut so that one row's attention scores of one layer
    (``n_heads x pos x pos`` float32) fit :data:`interp.heads.sizing.PASS_BYTES`.

    GPT-2 small (1024) and Pythia (2048) keep their context; Llama 3's 8192-token context becomes 2048, where one
    row's scores would take 8.6 GB per tensor (and more tokens than the statistics' budget covers).
    """
    info = model_info(model)
    return max(2, min(info.n_ctx, math.isqrt(PASS_BYTES // (4 * info.n_heads))))


_PREFIXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prefixes(model: Any, config: RomeConfig) -> list[str]:
    """Short texts sampled from the model (from BOS, top-5, one seed per prefix), cached per model and config.

    ``config.n_prefixes`` of ``config.prefix_tokens`` tokens each (a ``None`` count is sized for the model,
    :meth:`RomeConfig.sized`). Newlines become spaces: the prompt follows the prefix on the same line.
    """
    config = config.sized(model)
    if config.n_prefixes == 0:
        return []
    key = (config.n_prefixes, config.prefix_tokens, config.seed)
    cache = _PREFIXES.setdefault(model, {})
    if key not in cache:
        start = torch.tensor([model.tokenizer.bos_token_id])
        texts = [
            generate(model, start, max_new_tokens=config.prefix_tokens, top_k=5, seed=config.seed + i,
                     use_cache=False).text
            for i in range(config.n_prefixes)
        ]
        # Partial UTF-8 bytes decode to U+FFFD, which re-encodes to more tokens than were sampled.
        cache[key] = [t.replace("\n", " ").replace("\ufffd", "").strip() or "." for t in texts]
    return cache[key]


def mean_key(model: Any, layer: int, texts: list[str], subject: str) -> torch.Tensor:
    """``k*``: block ``layer``'s MLP key (``[d_mlp]``) at the subject's last token, averaged over ``texts``."""
    hook = hook_name("neurons", layer)
    cap = capture(model, texts, names=[hook])
    rows = [subject_span(model, t, subject)[1] - 1 for t in texts]
    return cap[hook][torch.arange(len(texts)), rows].float().mean(0)


@holds_model
def key_stats(
    model: Any, layer: int, n: int, texts: list[str] | None = None, *, max_tokens: int | None = None,
    progress: bool = True,
) -> Float[torch.Tensor, "d_mlp d_mlp"]:
    """Second moment ``C = E[k k^T]`` of block ``layer``'s MLP keys, over every token of ``n`` sequences.

    The default sequences are reference-world text packed like the training data (:func:`interp.reference.world_text.
    world_tokens`, seed 1), ``n_ctx`` tokens each, or fewer where one row's attention would outgrow
    :data:`interp.heads.sizing.PASS_BYTES` (:func:`stats_length`: 2048 on Llama 3). Their number is capped so that
    they hold at most ``max_tokens`` tokens (rounded up to whole sequences); the default cap is what
    :data:`interp.heads.sizing.STATS_FLOPS` of forward passes cover, 7 sequences of 1024 tokens on a
    GPT-2-small-shaped model and more than the 1000 x 64 tokens of the default ``n`` on the reference models (so
    they are not capped). ``C`` is computed once per (model, layer, sequence count) and cached on disk
    (:func:`stats_path`, named by the capped count; written through a temporary file and a rename, so concurrent
    readers never see half a file). A cache file that cannot be read or has the wrong shape is discarded with a
    warning and recomputed. With ``texts`` given those are used instead (cut to the context window, never capped)
    and nothing is cached.

    Memory stays bounded whatever ``n``: the sequences run in chunks of at most
    :data:`interp.heads.sizing.PASS_BYTES` of activations, each pass stops after block ``layer``, and only the
    ``[d_mlp, d_mlp]`` float64 sum is kept between chunks. A progress bar shows the pass.
    """
    info = model_info(model)
    path = None
    if texts is None:
        cap = budget_tokens(model, STATS_FLOPS) if max_tokens is None else max_tokens
        seq_len = stats_length(model)
        n = max(1, min(n, -(-cap // seq_len)))
        path = stats_path(model, layer, n)
        if path.is_file():
            cached = read_stats(path, info.d_mlp)
            if cached is not None:
                return cached
        tokens = world_tokens(model, n, seq_len, seed=1)
        batches = [Tokenized(t, torch.ones_like(t)) for t in tokens.split(rows_per_pass(model, seq_len))]
    else:
        bos = [model.tokenizer.bos_token_id] if info.prepend_bos else []
        rows = [(bos + model.tokenizer.encode(t, add_special_tokens=False))[: info.n_ctx] for t in texts]
        step = rows_per_pass(model, max(len(r) for r in rows)) if rows else 1
        pad = pad_id(model.tokenizer)
        batches = [pad_right(rows[i : i + step], pad, info.device) for i in range(0, len(rows), step)]
    total, count = torch.zeros(info.d_mlp, info.d_mlp, dtype=torch.float64), 0
    stop = layer + 1 if layer + 1 < info.n_layers else None  # nothing above the layer is needed
    for batch in tqdm(batches, desc=f"key statistics, layer {layer}", leave=False, disable=not progress):
        keep = batch.attention_mask.bool()

        def accumulate(x: torch.Tensor, hook: Any, keep: torch.Tensor = keep) -> None:
            nonlocal total, count
            keys = x[keep.to(x.device)].double().cpu()
            total += keys.T @ keys
            count += keys.shape[0]

        with torch.no_grad(), hooked(model, [(hook_name("neurons", layer), accumulate)]):
            model(batch.tokens, attention_mask=batch.attention_mask, stop_at_layer=stop)
    mom2 = (total / max(count, 1)).float()
    if path is not None:
        try:
            with atomic_path(path) as tmp:
                save_file({"mom2": mom2}, str(tmp))
        except OSError as err:  # a read-only or full cache folder costs a recompute next time, not this result
            warnings.warn(f"could not cache the key statistics in {path} ({err})", stacklevel=2)
    return mom2


def read_stats(path: Path, d_mlp: int) -> torch.Tensor | None:
    """The cached ``[d_mlp, d_mlp]`` key statistics at ``path``, or ``None`` (with a warning, the file removed) when
    the file is corrupt: truncated, not safetensors, without ``mom2``, of another shape or not finite."""
    try:
        mom2 = load_file(str(path))["mom2"]
        if tuple(mom2.shape) != (d_mlp, d_mlp) or not bool(torch.isfinite(mom2).all()):
            raise ValueError(f"mom2 of shape {tuple(mom2.shape)}, expected finite ({d_mlp}, {d_mlp})")
    except Exception as err:  # noqa: BLE001  # safetensors raises its own error type for every defect
        warnings.warn(f"discarding the corrupt key-statistics cache {path} ({type(err).__name__}: {err}); "
                      f"recomputing it", stacklevel=3)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return mom2


def solve_stats(
    model: Any, layer: int, key: torch.Tensor, config: RomeConfig, texts: list[str] | None = None, *,
    progress: bool = True,
) -> Float[torch.Tensor, " d_mlp"]:
    """``C^-1 k*`` with a ridge; the identity (``C = I``) when ``config.stats_samples == 0`` and no texts.

    The ridge is added to the diagonal in place, so the solve holds ``C`` in float64 and its factorisation, no
    identity matrix (``d_mlp = 14,336`` on an 8B Llama: 1.6 GB each). ``progress`` shows :func:`key_stats`' bar.
    """
    if config.stats_samples == 0 and texts is None:
        return key.float().clone()
    stats = key_stats(model, layer, config.stats_samples, texts, max_tokens=config.stats_tokens, progress=progress)
    mom2 = stats.to(torch.float64, copy=True)  # a copy: the ridge below must not reach the caller's tensor
    del stats
    ridge = config.stats_ridge * mom2.diagonal().mean()
    mom2.diagonal().add_(ridge)
    return torch.linalg.solve(mom2, key.double().cpu()).float().to(key.device)
