"""The dashboard's shared shell: sidebar inputs, cached model loading, cached results, error display.

Pages import this module (Streamlit puts ``apps/`` on ``sys.path`` while a page runs) and keep
to three steps: ``ctx = app_shell.context()`` for the model and prompt, ``app_shell.cached(...)``
(or a direct library call) for numbers, and ``st.plotly_chart`` for the library's figures. Every
page body runs inside :func:`run_page`, which turns any exception into an ``st.error`` so the
app never shows a traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import streamlit as st
import torch
from streamlit.runtime.caching.cache_errors import UnserializableReturnValueError

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


def cached(func: Callable[..., Any], key: ModelKey, /, *args: Any, **kwargs: Any) -> Any:
    """Call ``func(model, *args, **kwargs)`` on the shared model and cache the result per input.

    Results go to ``st.cache_data`` (each caller gets its own unpickled copy); results that cannot
    be pickled (e.g. ones holding a tokenizer or a closure) go to ``st.cache_resource`` instead,
    shared read-only between sessions.

    Args:
        func: A library function taking the model first, e.g. ``interp.activation_view``,
            ``interp.TunedLens.load_for`` or ``probes.fit``.
        key: The model's :class:`ModelKey` (the model itself is not hashable).
        *args: Further positional arguments (hashable, e.g. the prompt and a layer).
        **kwargs: Keyword arguments.

    Returns:
        The function's result.

    Raises:
        TypeError: ``func`` has no importable name (a lambda, a nested function, a partial), so it
            could not be told apart from another function in the caches.
    """
    name = cache_name(func)
    if name not in _UNPICKLABLE:
        try:
            return _cached_data(name, func, key, *args, **kwargs)
        except Exception as err:
            # st.cache_data pickles results; pickle's own errors come through as they are.
            if not isinstance(err, UnserializableReturnValueError) and "pickle" not in str(err).lower():
                raise
            _UNPICKLABLE.add(name)
    return _cached_resource(name, func, key, *args, **kwargs)


def cache_name(func: Callable[..., Any]) -> str:
    """The name that identifies ``func`` in the caches: ``"interp.heads.census.head_census"``.

    Streamlit cannot hash a function argument, so the caches key on this name instead.

    Raises:
        TypeError: the name would not tell ``func`` apart from other callables: it has no
            module-level name (a lambda, a nested function, a partial) or it is bound to an
            instance (every instance's method has the same name).
    """
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    owner = getattr(func, "__self__", None)
    bound_to_instance = owner is not None and not (inspect.isclass(owner) or inspect.ismodule(owner))
    if not module or not qualname or "<" in qualname or bound_to_instance:
        raise TypeError(f"cannot cache {func!r}: pass a function or classmethod defined at module or class level")
    return f"{module}.{qualname}"


_UNPICKLABLE: set[str] = set()
"""Functions (by :func:`cache_name`) whose results failed to pickle once; cached as shared resources from then on."""


# ``name`` identifies the function in the cache key; ``_func`` is left out of the hash (Streamlit
# cannot hash functions) and is only called.
@st.cache_data(max_entries=128, show_spinner=False)
def _cached_data(name: str, _func: Callable[..., Any], key: ModelKey, /, *args: Any, **kwargs: Any) -> Any:
    return _func(load_model(*key), *args, **kwargs)


@st.cache_resource(max_entries=64, show_spinner=False)
def _cached_resource(name: str, _func: Callable[..., Any], key: ModelKey, /, *args: Any, **kwargs: Any) -> Any:
    return _func(load_model(*key), *args, **kwargs)


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


def token_labels(tokens: list[str]) -> list[str]:
    """``"pos: 'token'"`` labels for token pickers (positions disambiguate repeated tokens)."""
    return [f"{i}: {t!r}" for i, t in enumerate(tokens)]


def _message(err: BaseException) -> str:
    # KeyError's str() wraps the message in quotes; show the bare reason.
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return str(text) or type(err).__name__
