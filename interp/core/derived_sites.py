"""Capture sites computed from a hook: names such as ``"sae:<hook>"`` that analyses register at run time.

The capture core knows no analysis. An analysis that reads a hook through a function (a sparse autoencoder
turning the residual stream into latents) registers a *resolver* for a name prefix here; when
:func:`interp.capture` meets ``"<prefix>:<rest>"`` it asks the resolver for a :class:`DerivedSite`, runs the
model with the base hook captured, and stores ``transform(base activation)`` under the derived name. A resolver
may also decline (return None), and the name is then reported as unknown.

Examples:
    >>> import torch
    >>> from interp.core.toy_models import load_toy
    >>> from interp.core.capturing import capture
    >>> def doubled(model, rest):
    ...     return DerivedSite(base=rest, transform=lambda x: 2 * x)
    >>> add_resolver("twice", doubled)
    >>> cap = capture(load_toy(), "The cat", ["twice:hook_embed", "hook_embed"])
    >>> bool(torch.equal(cap["twice:hook_embed"], 2 * cap["hook_embed"]))
    True
    >>> remove_resolver("twice")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch


class DerivedSite(NamedTuple):
    """How one derived name is computed."""

    base: str
    """The hook whose activation is transformed (a name in ``model.hook_dict``)."""
    transform: Callable[[torch.Tensor], torch.Tensor]
    """Maps the base activation ``[batch pos ...]`` to the derived one ``[batch pos ...]``."""


Resolver = Callable[[Any, str], DerivedSite | None]
"""``resolver(model, rest)`` for a name ``"<prefix>:<rest>"``: its :class:`DerivedSite`, or None if unknown."""

_RESOLVERS: dict[str, Resolver] = {}


def add_resolver(prefix: str, resolver: Resolver) -> None:
    """Make names ``"<prefix>:..."`` capturable through ``resolver`` (replacing an earlier one for ``prefix``).

    Raises:
        ValueError: ``prefix`` is empty or holds a ``:`` or a ``.`` (hook names use dots).
    """
    if not prefix or ":" in prefix or "." in prefix:
        raise ValueError(f"prefix={prefix!r}; use a non-empty word without ':' or '.'")
    _RESOLVERS[prefix] = resolver


def remove_resolver(prefix: str) -> None:
    """Forget the resolver of ``prefix`` (nothing happens if there is none)."""
    _RESOLVERS.pop(prefix, None)


def prefixes() -> list[str]:
    """The prefixes that have a resolver, sorted."""
    return sorted(_RESOLVERS)


def lookup(model: Any, name: str) -> DerivedSite | None:
    """The :class:`DerivedSite` of ``name`` on ``model``, or None when ``name`` is not a derived name.

    Raises:
        ValueError: the resolver names a base hook the model does not have.
    """
    prefix, colon, rest = name.partition(":")
    if not colon or prefix not in _RESOLVERS:
        return None
    site = _RESOLVERS[prefix](model, rest)
    if site is not None and site.base not in model.hook_dict:
        raise ValueError(f"names={name!r} derives from hook {site.base!r}, which this model does not have")
    return site


Finish = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""Completes a capture's ``{hook: tensor}`` with the derived names (see :func:`split`)."""


def split(model: Any, names: Sequence[str]) -> tuple[list[str], Finish]:
    """Replace derived names by their base hooks; returns the hooks to run and a function finishing the capture.

    The function takes the captured ``{hook: tensor}`` and returns it with each derived name added (in the
    order asked) and each base hook that was not itself asked for removed.

    Raises:
        ValueError: (from the finishing function) a base hook missing from the capture, as when activations were
            streamed to ``on_layer`` or ``save_to`` instead of kept.
    """
    derived = {name: site for name in names if (site := lookup(model, name)) is not None}
    if not derived:
        return list(names), dict
    hooks = list(dict.fromkeys(h for name in names for h in ([derived[name].base] if name in derived else [name])))
    asked = set(names)

    def finish(acts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = sorted({s.base for s in derived.values()} - set(acts))
        if missing:
            raise ValueError(f"derived names {sorted(derived)} need their base hooks {missing} kept in memory; "
                             "capture them without on_layer/save_to")
        out = {name: derived[name].transform(acts[derived[name].base]) if name in derived else acts[name]
               for name in names if name in derived or name in acts}
        out.update({h: x for h, x in acts.items() if h in asked and h not in out})
        return out

    return hooks, finish
