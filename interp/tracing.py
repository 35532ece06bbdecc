"""Causal tracing: find where a model reads a fact from the subject (Meng et al. 2022, "Locating and Editing").

Three runs of one prompt:

* **clean**: the prompt as it is; the answer has probability ``clean``;
* **corrupted**: Gaussian noise added to the token embeddings of the subject (scale ``noise`` times the standard
  deviation of the embedding matrix), averaged over ``samples`` draws; the answer drops to ``corrupted``;
* **restored**: the corrupted run with one clean hidden state put back, for every (token, layer): the residual
  stream after block ``layer`` (``kind="resid"``), or the MLP / attention outputs of a window of layers around
  ``layer`` (``kind="mlp"`` / ``"attn"``). ``scores[token, layer]`` is the answer's probability then.

A high score means that state carries what the model needs to recall the answer. The noise draws are the same for
every restoration (one seeded generator), so scores differ only by what was restored; all restorations of one
layer run as one batch of ``tokens x samples`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float

from interp.core.capturing import capture
from interp.core.hooks import LAYER_SITES, hook_name, hooked
from interp.core.locking import holds_model
from interp.core.model_info import model_info
from interp.core.tokens import str_tokens, tokenize

KINDS = {"resid": LAYER_SITES["resid_post"], "mlp": LAYER_SITES["mlp_out"], "attn": LAYER_SITES["attn_out"]}
"""Hook restored by each trace kind (``{L}`` is the layer)."""


@dataclass
class TraceResult:
    """Answer probabilities of a causal trace, one per restored (token, layer)."""

    scores: Float[torch.Tensor, "pos layer"]
    """Probability of the answer with the clean state of (token, layer) restored, averaged over noise draws."""
    clean: float
    """Probability of the answer in the clean run."""
    corrupted: float
    """Probability of the answer with the subject corrupted and nothing restored."""
    tokens: list[str]
    """The prompt's tokens (BOS included when the model prepends it)."""
    subject: tuple[int, int]
    """Token positions ``[start, end)`` of the subject."""
    answer: str
    """The answer token whose probability is traced."""
    kind: str
    """``"resid"``, ``"mlp"`` or ``"attn"``."""
    window: int
    """Number of consecutive layers restored together (1 for ``"resid"``)."""

    @property
    def indirect_effect(self) -> Float[torch.Tensor, "pos layer"]:
        """``scores - corrupted``: how much restoring each state brings the answer back."""
        return self.scores - self.corrupted

    @property
    def subject_last(self) -> int:
        """Position of the subject's last token, where ROME edits."""
        return self.subject[1] - 1

    def to_frame(self) -> Any:
        """One row per (token, layer): ``position, token, is_subject, layer, score, indirect_effect``."""
        import pandas as pd

        rows = [
            {"position": t, "token": tok, "is_subject": self.subject[0] <= t < self.subject[1], "layer": layer,
             "score": float(self.scores[t, layer]), "indirect_effect": float(self.scores[t, layer] - self.corrupted)}
            for t, tok in enumerate(self.tokens) for layer in range(self.scores.shape[1])
        ]
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        """The familiar heat map: tokens down, layers across, answer probability as colour."""
        import plotly.graph_objects as go

        labels = [f"{t}: {tok!r}" + (" *" if self.subject[0] <= t < self.subject[1] else "")
                  for t, tok in enumerate(self.tokens)]
        what = {"resid": "residual stream", "mlp": "MLP output", "attn": "attention output"}[self.kind]
        window = f" (window {self.window})" if self.kind != "resid" else ""
        fig = go.Figure(go.Heatmap(
            z=self.scores.tolist(), x=list(range(self.scores.shape[1])), y=labels, colorscale="Purples",
            zmin=min(self.corrupted, float(self.scores.min())), colorbar={"title": f"p({self.answer!r})"},
            hovertemplate=f"restore %{{y}} at layer %{{x}}<br>p({self.answer!r}) = %{{z:.3f}}<extra></extra>",
        ))
        fig.update_layout(
            title=f"Restoring the {what}{window}: clean p={self.clean:.3f}, corrupted p={self.corrupted:.3f}",
            xaxis={"title": "layer", "dtick": 1}, yaxis={"autorange": "reversed", "title": "token (* = subject)"},
        )
        return fig


def subject_span(model: Any, text: str, subject: str, *, prepend_bos: bool | None = None) -> tuple[int, int]:
    """Token positions ``[start, end)`` covering the last occurrence of ``subject`` in ``text``.

    Positions count the BOS token when the model prepends one, so they index :func:`interp.tokenize` output.

    Raises:
        ValueError: ``subject`` is empty or not in ``text``.

    Examples:
        >>> subject_span(model, "The Eiffel Tower is in", "The Eiffel Tower")  # doctest: +SKIP
        (1, 4)
    """
    if not subject.strip():
        raise ValueError(f"subject={subject!r} is empty; name the subject whose fact is traced or edited")
    start = text.rfind(subject)
    if start < 0:
        raise ValueError(f"subject={subject!r} is not in the prompt {text!r}")
    end = start + len(subject)
    bos = model_info(model).prepend_bos if prepend_bos is None else prepend_bos
    encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = encoded["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(spans) if a < end and b > start]
    return inside[0] + int(bos), inside[-1] + 1 + int(bos)


@holds_model
def causal_trace(
    model: Any,
    prompt: str,
    subject: str,
    *,
    kind: str = "resid",
    noise: float = 3.0,
    samples: int = 10,
    window: int | None = None,
    answer: str | None = None,
    seed: int = 0,
) -> TraceResult:
    """Trace which hidden states carry the fact the model recalls about ``subject``.

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: The prompt text; a ``{}`` in it is replaced by ``subject``.
        subject: The subject, as it appears in the prompt; its token embeddings are corrupted.
        kind: ``"resid"`` (residual stream after each block), ``"mlp"`` or ``"attn"`` (layer outputs).
        noise: Noise scale in units of the embedding matrix's standard deviation (ROME uses 3).
        samples: Noise draws averaged per score.
        window: Layers restored together around each layer for ``"mlp"``/``"attn"``: layers
            ``layer - window//2 .. layer + (window-1)//2`` clipped to the model. Default: a fifth of the layers
            (ROME restores 10 of GPT-2 XL's 48), at least 1. Must be 1 (the default) for ``"resid"``.
        answer: The answer text whose first token is traced; default: the model's top clean prediction.
        seed: Seed of the noise.

    Returns:
        A :class:`TraceResult` with ``scores[token, layer]``.

    Raises:
        ValueError: an unknown ``kind``, ``samples < 1``, ``noise < 0``, a bad ``window``, or a subject not in
            the prompt.

    Examples:
        >>> result = causal_trace(  # doctest: +SKIP
        ...     model, "{} is located in the city of", "the Eiffel Tower", kind="mlp"
        ... )
        >>> result.figure().show()  # doctest: +SKIP
    """
    info = model_info(model)
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; valid kinds are {', '.join(KINDS)}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples={samples!r}; need an int >= 1")
    if not noise >= 0:
        raise ValueError(f"noise={noise!r}; need a number >= 0")
    window = _check_window(window, kind, info.n_layers)
    text = prompt.replace("{}", subject)
    span = subject_span(model, text, subject)
    tokens = tokenize(model, text).tokens
    n_tok = tokens.shape[1]

    clean_cap = capture(model, tokens, names=[KINDS[kind].format(L=L) for L in range(info.n_layers)])
    clean_probs = clean_cap.logits[0, -1].float().softmax(-1)
    answer_id = int(clean_probs.argmax()) if answer is None else _first_token(model, answer)
    clean = float(clean_probs[answer_id])

    draws = _draws(model, span, samples, noise, seed)

    corrupted = float(_answer_prob(model, tokens, draws, span, answer_id, {}).mean())
    scores = torch.empty(n_tok, info.n_layers)
    for layer in range(info.n_layers):
        restore = {
            KINDS[kind].format(L=L): clean_cap[KINDS[kind].format(L=L)][0]
            for L in _window_layers(layer, window, info.n_layers)
        }
        probs = _answer_prob(model, tokens, draws, span, answer_id, restore, positions=list(range(n_tok)))
        scores[:, layer] = probs.view(n_tok, samples).mean(-1).cpu()
    return TraceResult(
        scores=scores, clean=clean, corrupted=corrupted, tokens=str_tokens(model, tokens[0]), subject=span,
        answer=model.tokenizer.decode([answer_id]), kind=kind, window=window,
    )


@holds_model
def trace_state(
    model: Any,
    prompt: str,
    subject: str,
    restore: dict[str, Sequence[int]],
    *,
    noise: float = 3.0,
    samples: int = 10,
    answer: str | None = None,
    seed: int = 0,
) -> float:
    """Answer probability of one corrupted run with chosen clean states restored (the slow, unbatched path).

    Args:
        model: A ``TransformerBridge`` from :func:`interp.load`.
        prompt: The prompt text; a ``{}`` in it is replaced by ``subject``.
        subject: The subject, as it appears in the prompt; its token embeddings are corrupted.
        restore: Hook name -> token positions whose clean value is put back, e.g.
            ``{"blocks.1.hook_mlp_out": [3]}``.
        noise: Noise scale, as in :func:`causal_trace`.
        samples: Noise draws averaged, as in :func:`causal_trace`.
        answer: The answer text whose first token is scored, as in :func:`causal_trace`.
        seed: Seed of the noise, as in :func:`causal_trace` (the same seed gives the same noise).

    Returns:
        The answer's probability averaged over noise draws.
    """
    text = prompt.replace("{}", subject)
    span = subject_span(model, text, subject)
    tokens = tokenize(model, text).tokens
    clean_cap = capture(model, tokens, names=list(restore))
    answer_id = int(clean_cap.logits[0, -1].argmax()) if answer is None else _first_token(model, answer)
    draws = _draws(model, span, samples, noise, seed)

    def put_back(name: str, positions: Sequence[int]):
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            x = x.clone()
            x[:, list(positions)] = clean_cap[name][0, list(positions)]
            return x

        return hook

    hooks = [(hook_name("embed"), _noise_hook(draws, span, repeat=1))]
    hooks += [(name, put_back(name, pos)) for name, pos in restore.items()]
    with torch.no_grad(), hooked(model, hooks):
        logits = model(tokens.repeat(samples, 1))
    return float(logits[:, -1].float().softmax(-1)[:, answer_id].mean())


@holds_model
def average_indirect_effect(
    model: Any, facts: Sequence[tuple[str, str]], *, kind: str = "resid", **trace_kwargs: Any
) -> Float[torch.Tensor, " layer"]:
    """Mean indirect effect of restoring the subject's last token, per layer, over ``(prompt, subject)`` pairs.

    Examples:
        >>> average_indirect_effect(model, [("{} is in the city of", "the Louvre")], kind="mlp")  # doctest: +SKIP
    """
    if not facts:
        raise ValueError("facts=[] is empty; pass (prompt, subject) pairs")
    effects = [causal_trace(model, p, s, kind=kind, **trace_kwargs) for p, s in facts]
    return torch.stack([r.indirect_effect[r.subject_last] for r in effects]).mean(0)


def _answer_prob(
    model: Any,
    tokens: torch.Tensor,
    draws: torch.Tensor,
    span: tuple[int, int],
    answer_id: int,
    restore: dict[str, torch.Tensor],
    positions: list[int] | None = None,
) -> Float[torch.Tensor, " batch"]:
    # Rows are (position, sample) pairs, sample fastest: row i restores positions[i // samples] under draw
    # i % samples. Without positions there is one row per draw and nothing is restored.
    samples = draws.shape[0]
    repeat = len(positions) if positions is not None else 1
    hooks = [(hook_name("embed"), _noise_hook(draws, span, repeat))]
    if positions is not None:
        rows = torch.arange(repeat * samples, device=tokens.device)
        where = torch.tensor(positions, device=tokens.device).repeat_interleave(samples)
        for name, clean in restore.items():
            hooks.append((name, _restore_hook(clean, rows, where)))
    with torch.no_grad(), hooked(model, hooks):
        logits = model(tokens.repeat(repeat * samples, 1))
    return logits[:, -1].float().softmax(-1)[:, answer_id]


def _draws(model: Any, span: tuple[int, int], samples: int, noise: float, seed: int) -> torch.Tensor:
    # One seeded CPU generator, so the same seed gives the same noise on any device.
    scale = noise * float(model.W_E.detach().float().std())
    shape = (samples, span[1] - span[0], model.W_E.shape[1])
    draws = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale
    return draws.to(device=model.W_E.device, dtype=model.W_E.dtype)


def _noise_hook(draws: torch.Tensor, span: tuple[int, int], repeat: int):
    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, span[0] : span[1]] += draws.repeat(repeat, 1, 1)
        return x

    return hook


def _restore_hook(clean: torch.Tensor, rows: torch.Tensor, where: torch.Tensor):
    def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[rows, where] = clean[where].to(x.dtype)
        return x

    return hook


def _check_window(window: int | None, kind: str, n_layers: int) -> int:
    if window is None:
        return 1 if kind == "resid" else max(1, n_layers // 5)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= n_layers:
        raise ValueError(f"window={window!r}; need an int in 1..{n_layers}")
    if kind == "resid" and window != 1:
        raise ValueError(f"window={window} with kind='resid': a residual state already holds all earlier layers; use 1")
    return window


def _window_layers(layer: int, window: int, n_layers: int) -> range:
    return range(max(0, layer - window // 2), min(n_layers, layer + (window + 1) // 2))


def _first_token(model: Any, answer: str) -> int:
    ids = model.tokenizer.encode(answer, add_special_tokens=False)
    if not ids:
        raise ValueError(f"answer={answer!r} encodes to no tokens")
    return int(ids[0])
