"""Names of the nodes path patching connects, spelled as the public EAP-IG code spells them.

Senders: ``input`` (the token embedding), ``a{L}.h{H}`` (a head's output), ``m{L}`` (an MLP's output).
Receivers: ``logits``, or one input of a head: ``a{L}.h{H}<q>``, ``a{L}.h{H}<k>``, ``a{L}.h{H}<v>``. On a
grouped-query model the keys and values of a group of query heads are one computation, so a ``k``/``v``
receiver is the key/value head, ``a{L}.kv{G}<k>`` (``a{L}.h{H}<k>`` is read as the group of head ``H``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from interp.core.model_info import ModelInfo, check_head, check_layer

_SENDER = re.compile(r"^(?:input|a(\d+)\.h(\d+)|m(\d+))$")
_RECEIVER = re.compile(r"^(?:logits|a(\d+)\.(h|kv)(\d+)<([qkv])>)$")


class Sender(NamedTuple):
    """A parsed sender: ``kind`` is ``"input"``, ``"head"`` or ``"mlp"``."""

    name: str
    kind: str
    layer: int
    head: int | None

    def upstream_of(self, receiver: Receiver) -> bool:
        """Whether this sender's output reaches ``receiver`` through the residual stream at all."""
        return receiver.kind == "logits" or self.kind == "input" or self.layer < receiver.layer


class Receiver(NamedTuple):
    """A parsed receiver: ``kind`` is ``"logits"`` or the head input ``"q"``, ``"k"``, ``"v"``; ``head`` indexes
    query heads for ``q`` and key/value heads for ``k``/``v``."""

    name: str
    kind: str
    layer: int
    head: int | None


def parse_sender(info: ModelInfo, name: str) -> Sender:
    """Parse a sender name and check its layer and head against the model.

    Raises:
        ValueError: a malformed name, or a layer or head the model lacks.

    Examples:
        >>> from interp.core.model_info import ModelInfo
        >>> info = ModelInfo("m", "gpt2", 2, 4, 4, 32, 8, 128, 300, 32, "layernorm", "learned", "gelu", True, "cpu")
        >>> parse_sender(info, "a1.h3"), parse_sender(info, "m0").kind
        (Sender(name='a1.h3', kind='head', layer=1, head=3), 'mlp')
    """
    match = _SENDER.match(str(name))
    if not match:
        raise ValueError(f"sender={name!r}; senders are 'input', 'a{{L}}.h{{H}}' (a head) or 'm{{L}}' (an MLP)")
    head_layer, head, mlp_layer = match.groups()
    if head_layer is not None:
        layer, h = check_layer(info, int(head_layer)), check_head(info, int(head))
        return Sender(f"a{layer}.h{h}", "head", layer, h)
    if mlp_layer is not None:
        layer = check_layer(info, int(mlp_layer))
        return Sender(f"m{layer}", "mlp", layer, None)
    return Sender("input", "input", -1, None)


def parse_receiver(info: ModelInfo, name: str) -> Receiver:
    """Parse a receiver name, mapping a grouped-query ``k``/``v`` input to its key/value head.

    Raises:
        ValueError: a malformed name, a layer or head the model lacks, or ``kv{G}`` with ``<q>``.

    Examples:
        >>> from interp.core.model_info import ModelInfo
        >>> info = ModelInfo("m", "llama", 2, 4, 2, 32, 8, 64, 300, 64, "rmsnorm", "rotary", "silu", True, "cpu")
        >>> parse_receiver(info, "a1.h3<k>").name, parse_receiver(info, "a1.h3<q>").name
        ('a1.kv1<k>', 'a1.h3<q>')
    """
    match = _RECEIVER.match(str(name))
    if not match:
        raise ValueError(f"receiver={name!r}; receivers are 'logits' or a head input 'a{{L}}.h{{H}}<q|k|v>' "
                         "('a{L}.kv{G}<k|v>' for a key/value head)")
    layer_text, unit, index, kind = match.groups()
    if layer_text is None:
        return Receiver("logits", "logits", info.n_layers, None)
    layer = check_layer(info, int(layer_text))
    if kind == "q":
        if unit == "kv":
            raise ValueError(f"receiver={name!r}: queries belong to query heads; use 'a{layer}.h{{H}}<q>'")
        return Receiver(f"a{layer}.h{check_head(info, int(index))}<q>", "q", layer, int(index))
    if unit == "h":
        kv = check_head(info, int(index)) // (info.n_heads // info.n_kv_heads)
    else:
        kv = check_head(info, int(index), kv=True)
    label = f"a{layer}.kv{kv}<{kind}>" if info.is_gqa else f"a{layer}.h{kv}<{kind}>"
    return Receiver(label, kind, layer, kv)


def all_senders(info: ModelInfo) -> list[str]:
    """Every sender of the model in forward order: ``input``, then each layer's heads and its MLP.

    Examples:
        >>> from interp.core.model_info import ModelInfo
        >>> info = ModelInfo("m", "gpt2", 1, 2, 2, 32, 8, 128, 300, 32, "layernorm", "learned", "gelu", True, "cpu")
        >>> all_senders(info)
        ['input', 'a0.h0', 'a0.h1', 'm0']
    """
    names = ["input"]
    for layer in range(info.n_layers):
        names += [f"a{layer}.h{h}" for h in range(info.n_heads)] + [f"m{layer}"]
    return names
