"""The one capture path: run a model on prompts once and keep the activations that were asked for.

Every analysis goes through :func:`capture`. It tokenizes (right padding, see
:mod:`interp.tokens`), runs the ``TransformerBridge`` under ``torch.no_grad()`` with a names
filter so only the requested hooks are stored, and returns a :class:`Capture` whose accessors
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

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from jaxtyping import Float, Int

from interp.core.hooks import ALIASES, hook_name
from interp.core.locking import holds_model
from interp.core.model_info import ModelInfo, check_head, check_layer, model_info
from interp.core.tokens import Prompts, str_tokens, tokenize

_NEEDS_POSITIONAL = {"pos_embed": "learned", "rot_k": "rotary", "rot_q": "rotary"}


@holds_model
def capture(
    model: Any,
    prompts: Prompts,
    names: str | Sequence[str] = "all",
    *,
    prepend_bos: bool | None = None,
) -> Capture:
    """Run ``model`` once on ``prompts`` and keep the activations named by ``names``.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompts: A string, a list of strings (right-padded into one batch), a token tensor
            ``[batch pos]``, or a :class:`interp.Tokenized`.
        names: Aliases from :data:`ALIASES` (``"resid"``, ``"pattern"``, ``"neurons"``...),
            full hook names (``"blocks.0.attn.hook_pattern"``), or ``"all"`` (every alias; on a
            large model pass only what you need: everything is kept in memory).
        prepend_bos: Override the model's BOS default for text prompts.

    Returns:
        A :class:`Capture` holding tokens, mask, logits and the requested activations.

    Raises:
        ValueError: an unknown alias or hook name (the valid aliases are listed), or a bad
            prompt (see :func:`interp.tokenize`).

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
    wanted = frozenset(resolve_names(model, names))
    batch = tokenize(model, prompts, prepend_bos=prepend_bos)
    with torch.no_grad():
        logits, cache = model.run_with_cache(
            batch.tokens,
            attention_mask=batch.attention_mask,
            # A predicate, not a list: given a list, the bridge also caches each name's
            # canonical twin (blocks.0.hook_in for blocks.0.hook_resid_pre), running every
            # hook twice.
            names_filter=wanted.__contains__,
            return_cache_object=False,
        )
    return Capture(
        tokens=batch.tokens,
        attention_mask=batch.attention_mask,
        logits=logits,
        activations=dict(cache),
        info=info,
        tokenizer=model.tokenizer,
    )


def resolve_names(model: Any, names: str | Sequence[str]) -> list[str]:
    """Expand aliases and check hook names against the model, keeping first-seen order.

    Raises:
        ValueError: an alias the model lacks or a name that is neither alias nor hook.

    Examples:
        >>> from interp.core.toy_models import load_toy
        >>> resolve_names(load_toy(), ["resid_pre", "blocks.0.attn.hook_pattern"])
        ['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre', 'blocks.0.attn.hook_pattern']
    """
    info = model_info(model)
    requested = [names] if isinstance(names, str) else list(names)
    if "all" in requested:
        requested = [a for a in ALIASES if _NEEDS_POSITIONAL.get(a, info.positional) == info.positional]
    hooks = model.hook_dict
    resolved: dict[str, None] = {}
    for name in requested:
        if name in ALIASES:
            needed = _NEEDS_POSITIONAL.get(name, info.positional)
            if needed != info.positional:
                raise ValueError(f"names={name!r} needs a model with {needed} positions; {info.arch} uses {info.positional}")
            for template in ALIASES[name]:
                for layer in range(info.n_layers) if "{L}" in template else [None]:
                    resolved[template.format(L=layer)] = None
        elif name in hooks:
            resolved[name] = None
        else:
            raise ValueError(
                f"names={name!r} is neither an alias ({', '.join(['all', *ALIASES])}) "
                "nor a hook name of this model (see model.hook_dict)"
            )
    return list(resolved)


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

