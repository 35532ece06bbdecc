"""The one capture path: run a model on prompts once and keep the activations that were asked for.

Every analysis goes through :func:`capture`. It tokenizes (right padding, see
:mod:`interp.tokens`), runs the ``TransformerBridge`` under ``torch.no_grad()`` with one hook on
each requested hook point (:mod:`interp.core.streaming`), and returns a :class:`Capture` whose accessors
validate layer/head indices and say which name to pass when something was not captured.

Head conventions (checked against HF in the tests):

- ``q``, ``z``, ``pattern``, ``scores`` have ``n_heads`` heads.
- ``k`` and ``v`` have ``n_kv_heads`` heads, exactly as the model computes them: for a
  grouped-query model (Llama with ``num_key_value_heads < num_attention_heads``) query head ``h``
  reads key/value head ``h // (n_heads // n_kv_heads)``. ``Capture.k(layer, expand=True)`` (or
  :func:`expand_kv_heads`) repeats them to one per query head.
- ``q`` and ``k`` are taken before rotary embedding (TransformerLens' ``hook_q``/``hook_k``);
  rotary models also offer ``rot_q``/``rot_k``, the rotated vectors the pattern is computed from.
- ``scores`` are the pre-softmax scores ``q.k / sqrt(d_head)`` with masked entries (future and
  padding keys) set to ``torch.finfo(dtype).min``, as in the HF eager kernel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core import derived_sites
from interp.core.hooks import ALIASES, MOE_ALIASES, fired_hooks, hook_name, moe_layers
from interp.core.locking import holds_model
from interp.core.model_info import ModelInfo, check_head, check_layer, model_info
from interp.core.streaming import OnLayer, read_folder, run_streaming
from interp.core.tokens import Prompts, str_tokens, tokenize

_NEEDS_POSITIONAL = {"pos_embed": "learned", "rot_k": "rotary", "rot_q": "rotary"}


@holds_model
def capture(
    model: Any,
    prompts: Prompts,
    names: str | Sequence[str] = "all",
    *,
    prepend_bos: bool | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    on_layer: OnLayer | None = None,
    save_to: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Capture:
    """Run ``model`` once on ``prompts`` and keep the activations named by ``names``.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompts: A string, a list of strings (right-padded into one batch), a token tensor
            ``[batch pos]``, or a :class:`interp.Tokenized`.
        names: Aliases from :data:`ALIASES` (``"resid"``, ``"pattern"``, ``"neurons"``...),
            full hook names (``"blocks.0.attn.hook_pattern"``), or ``"all"`` (every alias; on a
            large model pass only what you need: everything is kept in memory). Derived names such as
            ``"sae:<hook>"`` are computed from their base hook (:mod:`interp.core.derived_sites`).
        prepend_bos: Override the model's BOS default for text prompts.
        device: Move activations and logits there as they are produced (``"cpu"`` for a model on a GPU).
        dtype: Cast floating-point activations and logits as they are produced (``torch.bfloat16``: half).
        on_layer: Stream instead of keeping: called as ``on_layer(hook_name, tensor)`` when each hook
            fires (after ``device``/``dtype``); the returned :class:`Capture` then holds no activations,
            so at most one layer's tensors are alive at a time (plus whatever the callback keeps).
        save_to: Stream to a folder instead of keeping: one ``<hook name>.safetensors`` per hook, plus
            tokens, mask and logits, written as each hook fires and swapped in atomically when the pass
            ends; read it back with :func:`load_capture`. Combines with ``on_layer``.
        overwrite: Replace an existing ``save_to`` folder.
        progress: Show a tqdm bar over hooks (only once the pass lasts more than 2 seconds).

    Returns:
        A :class:`Capture` holding tokens, mask, logits and the requested activations (none when
        streaming to ``on_layer`` or ``save_to``).

    Raises:
        ValueError: an unknown alias or hook name (the valid aliases are listed), a bad
            prompt (see :func:`interp.tokenize`), or a ``dtype`` that is not floating point.
        FileExistsError: ``save_to`` exists and ``overwrite`` is False.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> model = load_toy()  # a random 2-layer GPT-2
        >>> cap = capture(model, ["The cat sat", "Paris"], names=["resid", "pattern"])
        >>> cap.tokens.shape, cap.last_positions.tolist()
        (torch.Size([2, 5]), [4, 1])
        >>> cap.resid(1, "post").shape, cap.pattern(0).shape
        (torch.Size([2, 5, 32]), torch.Size([2, 4, 5, 5]))
    """
    info = model_info(model)
    wanted_in_order, finish = derived_sites.split(model, resolve_names(model, names))  # "sae:<hook>"...
    batch = tokenize(model, prompts, prepend_bos=prepend_bos)
    # One hook per name on its hook point, not run_with_cache: that rebuilds the hook and alias maps, and given
    # a list also caches each name's canonical twin (blocks.0.hook_in for blocks.0.hook_resid_pre), twice the hooks.
    logits, kept = run_streaming(model, batch, wanted_in_order, info, device=device, dtype=dtype,
                                 on_layer=on_layer, save_to=save_to, overwrite=overwrite, progress=progress)
    return Capture(tokens=batch.tokens, attention_mask=batch.attention_mask, logits=logits,
                   activations=finish(kept), info=info, tokenizer=model.tokenizer)


def load_capture(folder: str | os.PathLike[str], model: Any = None, names: Sequence[str] | None = None) -> Capture:
    """Read back a capture written with ``capture(..., save_to=folder)`` (only the hooks in ``names``, if given).

    With ``model``, check the capture has its shapes and take its tokenizer (for :attr:`Capture.str_tokens`).

    Raises:
        FileNotFoundError: no capture saved in ``folder``.
        ValueError: not a capture folder, a hook that was not saved, or another model's capture.

    Examples:
        >>> import tempfile
        >>> from interp.core.toy_models import load_toy
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = capture(load_toy(), "The cat", names="neurons", save_to=folder, overwrite=True)
        ...     load_capture(folder).neurons(1).shape
        torch.Size([1, 4, 128])
    """
    batch, logits, acts, info = read_folder(folder, model, names)
    return Capture(tokens=batch.tokens, attention_mask=batch.attention_mask, logits=logits, activations=acts,
                   info=info, tokenizer=None if model is None else model.tokenizer)


def resolve_names(model: Any, names: str | Sequence[str]) -> list[str]:
    """Expand aliases and check hook names against the model, keeping first-seen order.

    Raises:
        ValueError: an alias the model lacks or a name that is neither alias nor hook.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> resolve_names(load_toy(), ["resid_pre", "blocks.0.attn.hook_pattern"])
        ['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre', 'blocks.0.attn.hook_pattern']
    """
    requested = [names] if isinstance(names, str) else list(names)
    fired = fired_hooks(model)
    if all(name in fired and name not in ALIASES for name in requested):
        return list(dict.fromkeys(requested))  # already resolved (as analyses pass them): skip the hook map
    info = model_info(model)
    moe = moe_layers(model)
    everything = "all" in requested
    if everything:
        requested = [a for a in ALIASES if _NEEDS_POSITIONAL.get(a, info.positional) == info.positional
                     and _moe_refusal(a, info, moe) is None]
    hooks = model.hook_dict
    resolved: dict[str, None] = {}
    for name in requested:
        if name in ALIASES:
            needed = _NEEDS_POSITIONAL.get(name, info.positional)
            if needed != info.positional:
                raise ValueError(
                    f"names={name!r} needs a model with {needed} positions; {info.arch} uses {info.positional}"
                )
            if (refusal := _moe_refusal(name, info, moe)) is not None:
                raise ValueError(refusal)
            layers = moe if name in MOE_ALIASES else range(info.n_layers)
            expanded = [t.format(L=layer) for t in ALIASES[name] for layer in (layers if "{L}" in t else [None])]
            present = [hook for hook in expanded if hook in fired]
            # "all" means what the model supports, and "resid" keeps pre and post where a parallel block has no
            # mid-point; but a site named on its own must be there.
            if len(present) < len(expanded) and not everything and len(ALIASES[name]) == 1:
                raise ValueError(_unfired(name, next(h for h in expanded if h not in fired), info))
            resolved.update(dict.fromkeys(present))
        elif name in hooks and name not in fired:
            raise ValueError(_unfired(name, name, info))
        elif name in hooks or derived_sites.lookup(model, name) is not None:
            resolved[name] = None
        else:
            hint = ("; 'sae:<hook>' needs `import interp.features` and an SAE of that hook"
                    if name.startswith("sae:") else "")
            raise ValueError(
                f"names={name!r} is neither an alias ({', '.join(['all', *ALIASES])}) "
                f"nor a hook name of this model (see model.hook_dict){hint}"
            )
    return list(resolved)


def _unfired(name: str, hook: str, info: ModelInfo) -> str:
    return (f"names={name!r}: {info.arch}'s bridge lists {hook} but does not fire it in a forward pass (a hook "
            "TransformerLens gates off, rotary applied inside one attention call, or a parallel block with no "
            "mid-point residual), so nothing could be captured there")


def _moe_refusal(alias: str, info: ModelInfo, moe: list[int]) -> str | None:
    # Router sites exist only on mixture-of-experts blocks; and there TransformerLens aliases
    # mlp.hook_post (our "neurons") to the block's d_model output, which holds no neurons.
    if alias in MOE_ALIASES and not moe:
        return f"names={alias!r} needs a mixture-of-experts model; {info.arch} has a dense feed-forward (no router)"
    if alias == "neurons" and moe:
        return (f"names='neurons' needs a dense MLP; {info.arch} routes each token to experts at layers {moe}: "
                "capture 'experts' and read them with interp.journey.expert_outputs")
    return None


def expand_kv_heads(
    x: Float[torch.Tensor, "batch pos kv_head d_head"], n_heads: int
) -> Float[torch.Tensor, "batch pos head d_head"]:
    """Repeat grouped key/value heads so there is one per query head (HF's ``repeat_kv``).

    Query head ``h`` reads key/value head ``h // (n_heads // n_kv_heads)``.

    Raises:
        ValueError: ``n_heads`` is not a multiple of the number of key/value heads.

    Examples:
        >>> expand_kv_heads(torch.arange(2.0).reshape(1, 1, 2, 1), 4).flatten().tolist()
        [0.0, 0.0, 1.0, 1.0]
    """
    n_kv = x.shape[2]
    if n_heads % n_kv:
        raise ValueError(f"n_heads={n_heads} is not a multiple of the {n_kv} key/value heads")
    return x.repeat_interleave(n_heads // n_kv, dim=2)


class NotCapturedError(KeyError):
    """An accessor asked for a hook that :func:`capture` was not told to keep."""

    def __str__(self) -> str:
        """The message alone, without the quotes ``KeyError`` puts around it."""
        return str(self.args[0])


@dataclass
class Capture:
    """Tokens, logits and activations of one batched forward pass.

    Tensors are returned as captured (detached, never modified in place here); copy before
    editing them. Layer and head arguments are validated against the model.
    """

    tokens: Int[torch.Tensor, "batch pos"]
    """Token ids the model ran on (right-padded)."""
    attention_mask: Int[torch.Tensor, "batch pos"]
    """1 at real tokens, 0 at padding."""
    logits: Float[torch.Tensor, "batch pos vocab"]
    """Output logits at every position."""
    activations: dict[str, torch.Tensor]
    """Captured tensors by TransformerLens hook name."""
    info: ModelInfo
    """Architecture facts of the model that ran."""
    tokenizer: Any = field(repr=False)
    """The model's tokenizer, for :attr:`str_tokens`."""

    def __getitem__(self, hook_name: str) -> torch.Tensor:
        """Return the activation captured at ``hook_name``."""
        return self._get(hook_name, hook_name)

    def __contains__(self, hook_name: object) -> bool:
        """Whether ``hook_name`` was captured."""
        return hook_name in self.activations

    def __repr__(self) -> str:
        """One line: model, batch shape and how many hooks were kept (tensors are not printed)."""
        return (
            f"Capture({self.info.name!r}, tokens={tuple(self.tokens.shape)}, "
            f"{len(self.activations)} hooks, {_megabytes(self.activations.values()):.1f} MB)"
        )

    def to_frame(self) -> Any:
        """One row per captured hook: name, shape, dtype and size in MB (a ``pandas.DataFrame``).

        Examples:
            >>> from interp.core.toy_models import load_toy
            >>> capture(load_toy(), "The cat", names="neurons").to_frame()["shape"].tolist()
            [(1, 4, 128), (1, 4, 128)]
        """
        import pandas as pd

        rows = [
            {"hook": name, "shape": tuple(x.shape), "dtype": str(x.dtype).removeprefix("torch."), "mb": _megabytes([x])}
            for name, x in self.activations.items()
        ]
        return pd.DataFrame(rows, columns=["hook", "shape", "dtype", "mb"])

    @property
    def hook_names(self) -> list[str]:
        """Names of the captured hooks, in capture order."""
        return list(self.activations)

    @cached_property
    def str_tokens(self) -> list[list[str]]:
        """Each token decoded on its own, ``[batch][pos]`` (padding decodes to the pad token)."""
        return str_tokens(self.tokenizer, self.tokens)

    @property
    def last_positions(self) -> Int[torch.Tensor, " batch"]:
        """Index of each row's last real token."""
        return self.attention_mask.sum(dim=-1) - 1

    @property
    def last_logits(self) -> Float[torch.Tensor, "batch vocab"]:
        """Logits at each row's last real token (the next-token prediction)."""
        rows = torch.arange(self.logits.shape[0], device=self.logits.device)
        return self.logits[rows, self.last_positions.to(self.logits.device)]

    def resid(self, layer: int, where: str = "pre") -> Float[torch.Tensor, "batch pos d_model"]:
        """Residual stream of block ``layer``: ``"pre"`` (its input), ``"mid"`` (after
        attention) or ``"post"`` (its output, equal to the next block's ``"pre"``)."""
        if where not in ("pre", "mid", "post"):
            raise ValueError(f"where={where!r}; use 'pre', 'mid' or 'post'")
        return self._layer_hook(layer, f"resid_{where}", "resid")

    def pattern(
        self, layer: int, head: int | None = None
    ) -> Float[torch.Tensor, "batch head q k"] | Float[torch.Tensor, "batch q k"]:
        """Attention probabilities; rows are query positions, columns key positions.

        With ``head`` given the head dimension is dropped: ``[batch q k]``.
        """
        return self._head_slice(self._layer_hook(layer, "pattern"), head, dim=1)

    def scores(
        self, layer: int, head: int | None = None
    ) -> Float[torch.Tensor, "batch head q k"] | Float[torch.Tensor, "batch q k"]:
        """Pre-softmax attention scores (masked entries hold ``finfo.min``)."""
        return self._head_slice(self._layer_hook(layer, "scores"), head, dim=1)

    def q(self, layer: int) -> Float[torch.Tensor, "batch pos head d_head"]:
        """Queries (before rotary embedding on rotary models)."""
        return self._layer_hook(layer, "q")

    def k(self, layer: int, expand: bool = False) -> Float[torch.Tensor, "batch pos kv_head d_head"]:
        """Keys, one per key/value head; ``expand=True`` repeats them to one per query head."""
        return self._kv(self._layer_hook(layer, "k"), expand)

    def v(self, layer: int, expand: bool = False) -> Float[torch.Tensor, "batch pos kv_head d_head"]:
        """Values, one per key/value head; ``expand=True`` repeats them to one per query head."""
        return self._kv(self._layer_hook(layer, "v"), expand)

    def rot_q(self, layer: int) -> Float[torch.Tensor, "batch pos head d_head"]:
        """Queries after rotary embedding (rotary models only)."""
        return self._layer_hook(layer, "rot_q")

    def rot_k(self, layer: int, expand: bool = False) -> Float[torch.Tensor, "batch pos kv_head d_head"]:
        """Keys after rotary embedding (rotary models only)."""
        return self._kv(self._layer_hook(layer, "rot_k"), expand)

    def z(self, layer: int) -> Float[torch.Tensor, "batch pos head d_head"]:
        """Per-head attention outputs ``pattern @ v``, before the output projection."""
        return self._layer_hook(layer, "z")

    def attn_out(self, layer: int) -> Float[torch.Tensor, "batch pos d_model"]:
        """What the attention layer adds to the residual stream."""
        return self._layer_hook(layer, "attn_out")

    def mlp_out(self, layer: int) -> Float[torch.Tensor, "batch pos d_model"]:
        """What the MLP adds to the residual stream."""
        return self._layer_hook(layer, "mlp_out")

    def neurons(self, layer: int) -> Float[torch.Tensor, "batch pos d_mlp"]:
        """MLP neuron activations (after the nonlinearity; times the gate on gated MLPs)."""
        return self._layer_hook(layer, "neurons")

    def router_logits(self, layer: int) -> Float[torch.Tensor, "batch pos n_experts"]:
        """Router scores of every expert for every token (mixture-of-experts models only)."""
        return self._per_token(self._layer_hook(layer, "router_logits", "experts"))

    def expert_weights(self, layer: int) -> Float[torch.Tensor, "batch pos n_experts"]:
        """Routing weights the experts' outputs were scaled by, zero off each token's chosen experts."""
        return self._per_token(self._layer_hook(layer, "expert_weights", "experts"))

    def expert_indices(self, layer: int) -> Int[torch.Tensor, "batch pos top_k"]:
        """The experts each token was routed to, in the router's order."""
        return self._per_token(self._layer_hook(layer, "expert_indices", "experts"))

    def _per_token(self, x: torch.Tensor) -> torch.Tensor:
        # Routers run on the flattened [batch*pos, ...] tokens.
        return x.reshape(*self.tokens.shape, x.shape[-1])

    def _layer_hook(self, layer: int, site: str, alias: str | None = None) -> torch.Tensor:
        check_layer(self.info, layer)
        return self._get(hook_name(site, layer), alias or site)

    def _get(self, hook_name: str, alias: str) -> torch.Tensor:
        if hook_name not in self.activations:
            raise NotCapturedError(
                f"{hook_name} was not captured; pass names=[..., {alias!r}] to capture()"
            )
        return self.activations[hook_name]

    def _head_slice(self, x: torch.Tensor, head: int | None, dim: int) -> torch.Tensor:
        return x if head is None else x.select(dim, check_head(self.info, head))

    def _kv(self, x: torch.Tensor, expand: bool) -> torch.Tensor:
        return expand_kv_heads(x, self.info.n_heads) if expand else x


def _megabytes(tensors: Any) -> float:
    return sum(x.numel() * x.element_size() for x in tensors) / 2**20

