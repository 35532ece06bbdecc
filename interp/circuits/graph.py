"""The computational graph circuits are found in: senders, receivers, and which edges between them exist.

Nodes follow the naming of the public EAP-IG code (Hanna et al., 2024) so results can be compared:

- senders (what writes to the residual stream): ``input`` (token + position embedding), ``a{L}.h{H}`` (one
  attention head's output, ``z @ W_O`` without the output bias), ``m{L}`` (an MLP's output);
- receivers (what reads it): ``a{L}.h{H}<q>``, ``<k>``, ``<v>`` (a head's query, key and value input, each a
  separate receiver), ``m{L}`` (an MLP's input) and ``logits`` (the final norm's input).

On a grouped-query model one key/value head is read by ``n_heads // n_kv_heads`` query heads. The key and value
*inputs* are then computed once per key/value head, so each is ONE receiver named after the key/value head:
``a{L}.kv{G}<k>`` and ``a{L}.kv{G}<v>`` (query head ``H`` reads group ``G = H // (n_heads // n_kv_heads)``).
Query inputs stay per head, ``a{L}.h{H}<q>``. Models with ``n_kv_heads == n_heads`` use ``a{L}.h{H}<k>``.

An edge ``sender -> receiver`` exists when the sender writes before the receiver reads: a head or MLP of layer
``L`` feeds every receiver of later layers, the MLP of its own layer (heads only: attention runs first), and the
logits; ``input`` feeds everything.

Examples:
    >>> from interp.core.toy_models import ToyConfig, load_toy
    >>> graph = EdgeGraph.for_model(load_toy(ToyConfig(arch="llama", n_heads=4, n_kv_heads=2)))
    >>> graph.senders[:3], graph.receivers[:2], graph.receivers[4:6]
    (['input', 'a0.h0', 'a0.h1'], ['a0.h0<q>', 'a0.h1<q>'], ['a0.kv0<k>', 'a0.kv1<k>'])
    >>> graph.n_edges == int(graph.valid.sum())
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool

from interp.core.model_info import ModelInfo, model_info


@dataclass(frozen=True)
class EdgeGraph:
    """Senders, receivers and the ``[sender, receiver]`` mask of edges that exist, for one model shape.

    Attributes:
        info: The model's shape.
        senders: Sender names in forward order: ``input``, then per layer its heads and its MLP.
        receivers: Receiver names in forward order: per layer the heads' q inputs, the k inputs, the v inputs,
            the MLP input; ``logits`` last.
        valid: ``valid[s, r]`` is True when the edge ``senders[s] -> receivers[r]`` exists.
    """

    info: ModelInfo
    senders: list[str]
    receivers: list[str]
    valid: Bool[torch.Tensor, "sender receiver"]

    @classmethod
    def for_model(cls, model: Any) -> EdgeGraph:
        """The graph of ``model`` (a ``TransformerBridge``) or of a :class:`ModelInfo`."""
        info = model if isinstance(model, ModelInfo) else model_info(model)
        senders = ["input"]
        sender_layer = [-1]
        receivers: list[str] = []
        receiver_layer: list[float] = []
        for layer in range(info.n_layers):
            heads = [f"a{layer}.h{h}" for h in range(info.n_heads)]
            senders += heads + [f"m{layer}"]
            sender_layer += [layer] * info.n_heads + [layer + 0.5]
            names = [f"a{layer}.h{h}<q>" for h in range(info.n_heads)]
            names += [f"{kv_node(info, layer, g)}<{x}>" for x in "kv" for g in range(info.n_kv_heads)]
            receivers += names + [f"m{layer}"]
            receiver_layer += [layer] * len(names) + [layer + 0.5]
        receivers.append("logits")
        receiver_layer.append(info.n_layers)
        valid = torch.tensor(sender_layer)[:, None] < torch.tensor(receiver_layer)[None, :]
        return cls(info, senders, receivers, valid)

    @property
    def n_edges(self) -> int:
        """How many edges exist."""
        return int(self.valid.sum())

    def layer_slices(self, layer: int) -> tuple[slice, slice]:
        """Receiver slices of ``layer``'s attention inputs (q, k, v in order) and the senders written before it."""
        per_layer = self.info.n_heads + 2 * self.info.n_kv_heads + 1
        start = layer * per_layer
        return slice(start, start + per_layer - 1), slice(0, 1 + layer * (self.info.n_heads + 1))

    def mlp_receiver(self, layer: int) -> int:
        """Index of ``m{layer}`` among the receivers."""
        return (layer + 1) * (self.info.n_heads + 2 * self.info.n_kv_heads + 1) - 1

    def edge(self, sender: str, receiver: str) -> tuple[int, int]:
        """``(sender index, receiver index)`` of an existing edge.

        Raises:
            ValueError: an unknown node, or an edge that does not exist (a receiver reading a later sender).
        """
        if sender not in self.senders:
            raise ValueError(f"sender={sender!r}; senders are input, a{{L}}.h{{H}}, m{{L}} (e.g. {self.senders[1]!r})")
        if receiver not in self.receivers:
            raise ValueError(f"receiver={receiver!r}; receivers are e.g. {self.receivers[0]!r}, 'm0', 'logits'")
        s, r = self.senders.index(sender), self.receivers.index(receiver)
        if not self.valid[s, r]:
            raise ValueError(f"no edge {sender} -> {receiver}: the receiver reads before the sender writes")
        return s, r


def kv_node(info: ModelInfo, layer: int, kv_head: int) -> str:
    """The node name of key/value head ``kv_head``: ``a{L}.kv{G}`` on grouped-query models, else ``a{L}.h{G}``."""
    return f"a{layer}.kv{kv_head}" if info.is_gqa else f"a{layer}.h{kv_head}"
