"""The dashboard's shared shell: sidebar inputs, cached model loading, cached results, error display.

Pages import this module (Streamlit puts ``apps/`` on ``sys.path`` while a page runs) and keep
to three steps: ``ctx = app_shell.context()`` for the model and prompt, ``app_shell.cached(...)``
(or a direct library call) for numbers, and ``st.plotly_chart`` for the library's figures. Every
page body runs inside :func:`run_page`, which turns any exception into an ``st.error`` so the
app never shows a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import streamlit as st
from streamlit.runtime.caching.cache_errors import UnserializableReturnValueError
import torch

import interp

DEFAULT_PROMPT = "The Eiffel Tower is located in the city of"
"""Prompt shown on first load: a sentence in the reference world's style."""

DTYPES = ("float32", "bfloat16", "float16")
"""Parameter dtypes offered in the sidebar (float32 first: the precision analyses want)."""

USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, IndexError)
"""Exceptions the library raises for bad input; shown as the reason, without a type name."""


class ModelKey(NamedTuple):
    """What identifies a loaded model in the caches: name or path, device and dtype."""

    name: str
    device: str
    dtype: str


@dataclass
class Context:
    """What a page needs: the shared model, its cache key, shape facts and the sidebar prompt."""

    model: Any
    key: ModelKey
    info: interp.ModelInfo
    prompt: str


@st.cache_resource(max_entries=4, show_spinner=False)
def load_model(name: str, device: str, dtype: str) -> Any:
    """Load a model once per (name, device, dtype) for every session.

    The returned bridge is shared: pages must not modify it (the fact editor edits a per-session copy).
    """
    return interp.load(name, device=device, dtype=dtype)


def cached(func: str, key: ModelKey, *args: Any, **kwargs: Any) -> Any:
    """Call ``func(model, *args, **kwargs)`` on the shared model and cache the result per input.

    Results go to ``st.cache_data`` (each caller gets its own unpickled copy); results that cannot
    be pickled (e.g. ones holding a tokenizer or a closure) go to ``st.cache_resource`` instead,
    shared read-only between sessions.

    Args:
        func: Dotted path of a library function taking the model first, e.g.
            ``"interp.activation_view"`` or ``"probes.fit"``.
        key: The model's :class:`ModelKey` (the model itself is not hashable).
        *args: Further positional arguments (hashable, e.g. the prompt and a layer).
        **kwargs: Keyword arguments.

    Returns:
        The function's result.
    """
    if func not in _UNPICKLABLE:
        try:
            return _cached_data(func, key, *args, **kwargs)
        except Exception as err:
            # st.cache_data pickles results; pickle's own errors come through as they are.
            if not isinstance(err, UnserializableReturnValueError) and "pickle" not in str(err).lower():
                raise
            _UNPICKLABLE.add(func)
    return _cached_resource(func, key, *args, **kwargs)


_UNPICKLABLE: set[str] = set()
"""Functions whose results failed to pickle once; they are cached as shared resources from then on."""


@st.cache_data(max_entries=128, show_spinner=False)
def _cached_data(func: str, key: ModelKey, *args: Any, **kwargs: Any) -> Any:
    return resolve(func)(load_model(*key), *args, **kwargs)


@st.cache_resource(max_entries=64, show_spinner=False)
def _cached_resource(func: str, key: ModelKey, *args: Any, **kwargs: Any) -> Any:
    return resolve(func)(load_model(*key), *args, **kwargs)


def resolve(func: str) -> Callable[..., Any]:
    """Find a library callable by dotted path: ``"interp.logit_lens"``, ``"interp.TunedLens.load_for"``.

    Attributes are looked up from the top package first, so a function wins over a submodule of the
    same name (``interp.generate``); a path through such a submodule (``"interp.generate.next_token"``)
    falls back to importing the longest module prefix.
    """
    parts = func.split(".")
    try:
        target: Any = importlib.import_module(parts[0])
        for name in parts[1:]:
            target = getattr(target, name)
        return target
    except AttributeError:
        pass
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(f"cannot import {func!r}")


def available(func: str) -> bool:
    """Whether the library provides ``func`` (a dotted path) yet."""
    try:
        resolve(func)
    except (ImportError, AttributeError):
        return False
    return True


def devices() -> list[str]:
    """Devices this machine offers, CPU first."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


SIDEBAR = "sidebar_selection"
"""Session-state key of what the sidebar widgets returned on this run (see :func:`sidebar`)."""


def sidebar() -> None:
    """Draw the sidebar inputs (model picker, own-model field, device, dtype, prompt).

    What they return is kept under :data:`SIDEBAR` for the page that runs next: reading widget
    values back by key is not reliable before a widget has been changed once.
    """
    with st.sidebar:
        name = st.selectbox("Model", interp.reference.names(), key="model_name", help="An embedded reference model.")
        own = st.text_input(
            "…or your own model",
            key="model_path",
            placeholder="checkpoint directory or Hugging Face name",
            help="When filled in, this is used instead of the embedded model above.",
        )
        left, right = st.columns(2)
        device = left.selectbox("Device", devices(), key="device")
        dtype = right.selectbox("Dtype", DTYPES, key="dtype")
        prompt = st.text_area("Prompt", value=DEFAULT_PROMPT, key="prompt", height=100)
    st.session_state[SIDEBAR] = (ModelKey((own or "").strip() or name, device, dtype), prompt)


def model_key() -> ModelKey:
    """The :class:`ModelKey` the sidebar currently selects."""
    return st.session_state[SIDEBAR][0]


def prompt() -> str:
    """The sidebar's prompt."""
    return st.session_state[SIDEBAR][1]


def context(need_prompt: bool = True) -> Context:
    """Load (or fetch from cache) the selected model and read the prompt.

    Raises:
        ValueError: the prompt is empty (when ``need_prompt``), or the model cannot be loaded.
        FileNotFoundError: the model path does not exist.
    """
    key = model_key()
    with st.spinner(f"Loading {key.name} ({key.device}, {key.dtype})…"):
        model = load_model(*key)
    text = prompt()
    if need_prompt and not text.strip():
        raise ValueError("the prompt is empty; type a prompt in the sidebar")
    return Context(model=model, key=key, info=interp.model_info(model), prompt=text)


def run_page(render: Callable[[], None]) -> None:
    """Run a page body, showing any exception as ``st.error`` with its reason (never a traceback)."""
    try:
        render()
    except USER_ERRORS as err:
        st.error(_message(err))
    except Exception as err:  # the app must never show a traceback, whatever the library raises
        st.error(f"{type(err).__name__}: {_message(err)}")


def missing(func: str, issue: str) -> bool:
    """Show an info box and return True when ``func`` has not landed in the library yet."""
    if available(func):
        return False
    st.info(f"This page needs `{func}`, which this installation of the library does not have yet ({issue}).")
    return True


def token_labels(tokens: list[str]) -> list[str]:
    """``"pos: 'token'"`` labels for token pickers (positions disambiguate repeated tokens)."""
    return [f"{i}: {t!r}" for i, t in enumerate(tokens)]


def _message(err: BaseException) -> str:
    # KeyError's str() wraps the message in quotes; show the bare reason.
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return str(text) or type(err).__name__
