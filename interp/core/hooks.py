"""The one place TransformerLens hook names are spelled.

Every analysis names a site (``"resid_post"``, ``"z"``, ``"neurons"``...) and a layer, and asks
:func:`hook_name` for the hook; nothing else in interp writes ``"blocks.{L}..."`` by hand, so a
bridge that renames a hook needs one edit here.

Examples:
    >>> hook_name("z", 3)
    'blocks.3.attn.hook_z'
    >>> hook_name("embed")
    'hook_embed'
    >>> layer_names("resid_post", range(2))
    ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from interp.core.locking import model_lock

MOE_SITES: dict[str, str] = {
    "expert_in": "blocks.{L}.mlp.hook_in",
    "expert_indices": "blocks.{L}.mlp.gate.hook_expert_indices",
    "expert_weights": "blocks.{L}.mlp.gate.hook_expert_weights",
    "router_logits": "blocks.{L}.mlp.gate.hook_out",
}
"""Mixture-of-experts sites (TransformerLens' ``MoEBridge`` and its ``MoERouterBridge`` named ``gate``).

``expert_in`` is what the router and the experts read (the normed residual, ``[batch pos d_model]``);
the router sites fire once per token, flattened to ``[batch*pos ...]``: ``router_logits``
``[.. n_experts]``, ``expert_weights`` (the routing weights the experts were scaled by, zero off the chosen
experts) ``[.. n_experts]`` and ``expert_indices`` (the chosen experts) ``[.. top_k]``. On dense models
``blocks.{L}.mlp.gate`` is a gated MLP's gate projection, so these are offered only where
:func:`moe_layers` finds a router."""

LAYER_SITES: dict[str, str] = {
    **MOE_SITES,
    "attn_out": "blocks.{L}.hook_attn_out",
    "k": "blocks.{L}.attn.hook_k",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "neurons": "blocks.{L}.mlp.hook_post",
    "pattern": "blocks.{L}.attn.hook_pattern",
    "q": "blocks.{L}.attn.hook_q",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "rot_k": "blocks.{L}.attn.hook_rot_k",
    "rot_q": "blocks.{L}.attn.hook_rot_q",
    "scores": "blocks.{L}.attn.hook_attn_scores",
    "v": "blocks.{L}.attn.hook_v",
    "z": "blocks.{L}.attn.hook_z",
}
"""Per-layer sites and their hook-name templates (``{L}`` is the layer)."""

MODEL_SITES: dict[str, str] = {
    "embed": "hook_embed",
    "ln_final": "ln_final.hook_normalized",
    "ln_final_scale": "ln_final.hook_scale",
    "pos_embed": "hook_pos_embed",
}
"""Sites outside the blocks, one hook each."""

_UNALIASED = ("ln_final_scale",)
# The final norm's scale ([batch pos 1]) is read by the journey's residual decomposition; capture's
# aliases predate it and "all" must keep meaning what it meant, so it has no alias.

ALIASES: dict[str, tuple[str, ...]] = dict(
    sorted(
        {
            **{
                site: (template,)
                for site, template in {**LAYER_SITES, **MODEL_SITES}.items()
                if site not in _UNALIASED
            },
            "resid": (LAYER_SITES["resid_pre"], LAYER_SITES["resid_mid"], LAYER_SITES["resid_post"]),
            "experts": (*MOE_SITES.values(), LAYER_SITES["mlp_out"]),
        }.items()
    )
)
"""Short names accepted by :func:`interp.capture`, each expanding to TransformerLens hook names
(``{L}`` runs over all layers). ``"all"`` means every alias the model supports."""

MOE_ALIASES: frozenset[str] = frozenset({*MOE_SITES, "experts"})
"""Aliases only mixture-of-experts models have (``"experts"``: every router site plus ``mlp_out``, all that
:func:`interp.journey.expert_routing` needs)."""


def moe_layers(model: Any) -> list[int]:
    """The blocks of ``model`` whose feed-forward is a routed mixture of experts (none on a dense model).

    A block counts when TransformerLens bridged its router (the ``expert_indices`` hook exists); dense
    blocks of an interleaved stack have none.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> moe_layers(load_toy())
        []
    """
    hooks = model.hook_dict
    return [layer for layer in range(int(model.cfg.n_layers)) if hook_name("expert_indices", layer) in hooks]


def hook_name(site: str, layer: int | None = None) -> str:
    """The TransformerLens hook name of ``site`` (at ``layer`` for per-layer sites).

    Args:
        site: A key of :data:`LAYER_SITES` (needs ``layer``) or :data:`MODEL_SITES` (takes none).
        layer: The block index, for per-layer sites. It is not range-checked here: callers check it
            against the model with :func:`interp.check_layer`.

    Raises:
        ValueError: an unknown site, or a layer missing for a per-layer site (or given for a model-wide one).
    """
    if site in LAYER_SITES:
        if layer is None:
            raise ValueError(f"site={site!r} is per layer; pass a layer")
        return LAYER_SITES[site].replace("{L}", str(int(layer)))
    if site in MODEL_SITES:
        if layer is not None:
            raise ValueError(f"site={site!r} is model-wide; it takes no layer (got layer={layer})")
        return MODEL_SITES[site]
    raise ValueError(f"site={site!r}; valid sites are {', '.join(sorted({**LAYER_SITES, **MODEL_SITES}))}")


def site_of(name: str) -> str | None:
    """The site a hook name belongs to, or None for a name :func:`hook_name` does not make.

    Examples:
        >>> site_of("blocks.3.attn.hook_pattern")
        'pattern'
        >>> site_of("hook_embed")
        'embed'
    """
    for site, template in LAYER_SITES.items():
        prefix, _, suffix = template.partition("{L}")
        middle = name[len(prefix) : len(name) - len(suffix)]
        if name.startswith(prefix) and name.endswith(suffix) and middle.isdigit():
            return site
    return next((site for site, hook in MODEL_SITES.items() if hook == name), None)


def layer_names(site: str, layers: Iterable[int]) -> list[str]:
    """:func:`hook_name` of one per-layer ``site`` at each of ``layers``, in order."""
    return [hook_name(site, layer) for layer in layers]


@contextlib.contextmanager
def hooked(model: Any, fwd_hooks: Sequence[tuple[str, Callable[..., Any]]]) -> Iterator[Any]:
    """Attach forward hooks to ``model`` for the ``with`` block, and remove them on exit, even on error.

    The one way analyses attach hooks (besides :func:`interp.capture`), so that what the hook layer
    guarantees lives in one place: the hooks are removed on exit, and the block holds the model's lock
    (:func:`interp.core.locking.model_lock`), so no other thread runs the model while they are attached.

    Args:
        model: A loaded ``TransformerBridge``.
        fwd_hooks: ``(hook name, hook function)`` pairs, as TransformerLens takes them; names come
            from :func:`hook_name`.

    Yields:
        The model, hooked.
    """
    fwd_hooks = list(fwd_hooks)
    with model_lock(model):
        points = model.hook_dict
        if not all(name in points for name, _ in fwd_hooks):  # an alias: let the bridge resolve it
            with model.hooks(fwd_hooks=fwd_hooks):
                yield model
            return
        # Names that are hook points attach straight to them: ``model.hooks()`` rebuilds the bridge's hook and
        # alias maps and resolves every name through them on each call, a measurable cost on a many-hook capture.
        added = []
        try:
            for name, fn in fwd_hooks:
                point = points[name]
                added.append((point, point.add_hook(fn)))
            yield model
        finally:
            for point, handle in reversed(added):
                handle.hook.remove()
                point.fwd_hooks[:] = [h for h in point.fwd_hooks if h is not handle]


_FIRED: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def fired_hooks(model: Any) -> frozenset[str]:
    """The hooks of ``model`` that fire in a forward pass (found once per model, on two tokens).

    A bridge can list a hook it never calls: the rotary hooks of GPT-NeoX, GPT-J and Phi-3, whose Hugging Face
    attention rotates inside one call, or ``hook_resid_mid`` of a parallel block, where attention and MLP read the
    same residual. Capturing such a hook would silently keep nothing, so :func:`interp.capture` asks this first.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> hook_name("rot_q", 0) in fired_hooks(load_toy())  # GPT-2 has no rotary embedding
        False
    """
    import torch

    with model_lock(model):
        fired = _FIRED.get(model)
        if fired is None:
            device = next((p.device for p in model.parameters() if p.device.type != "meta"), torch.device("cpu"))
            # TransformerLens warns about the hooks gated off by its set_use_* switches: they do not fire, and
            # that is what this function reports.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                _, cache = model.run_with_cache(torch.zeros((1, 2), dtype=torch.long, device=device),
                                                names_filter=lambda _: True, return_cache_object=False)
            fired = _FIRED[model] = frozenset(cache)
        return fired
