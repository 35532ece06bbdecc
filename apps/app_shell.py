"""The dashboard's shared shell: sidebar inputs, cached model loading, cached results, error display.

Pages import this module (Streamlit puts ``apps/`` on ``sys.path`` while a page runs) and keep
to three steps: ``ctx = app_shell.context()`` for the model and prompt, ``app_shell.cached(...)``
(or a direct library call under :func:`holding`) for numbers, and ``st.plotly_chart`` for the
library's figures. Every page body runs inside :func:`run_page`, which turns any exception into an
``st.error`` so the app never shows a traceback.

What the dashboard guarantees to the many visitors of one server:

- one copy of each model, shared: a session's ROME edit is applied and undone (bit for bit) around the
  session's own computations, under the model's lock (:func:`cached` with ``edit=``, :func:`edited`);
- every cache is bounded in entries and in time (``INTERP_DASHBOARD_CACHE_TTL`` seconds, default 600), and
  its key holds the session's edit (:func:`edit_id`), so edited and unedited results never mix;
- the default model and its pages' default results are computed when the server starts (``apps/warm.py``)
  and kept, unedited, for the server's life in a store bounded in entries (:func:`pin_model`, :func:`pin`);
  :func:`cached` answers from it first, so the first visitor of a page does not wait and a warmed result
  never expires;
- every text input has a cap (:func:`check_text`);
- the own-model field loads only the embedded models, folders under ``INTERP_DASHBOARD_ROOTS`` and, with
  ``INTERP_DASHBOARD_HUB=1``, hub names (:func:`resolve_model`); messages shown to visitors carry no
  server paths (:func:`scrub`).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import streamlit as st
import torch
from access import CAPS, MAX_PARAPHRASES, check_text, hub_allowed, resolve_model, scrub  # noqa: F401 (pages')
from streamlit.runtime.caching.cache_errors import UnserializableReturnValueError

import interp
from interp.core.locking import model_lock
from interp.core.model_info import display_name

DEFAULT_PROMPT = "The Eiffel Tower is located in the city of"
"""Prompt shown on first load: a sentence in the reference world's style."""

DTYPES = ("float32", "bfloat16", "float16")
"""Parameter dtypes offered in the sidebar on accelerators (float32 first: the precision analyses want)."""

CPU_DTYPES = ("float32", "bfloat16")
"""Dtypes offered on the CPU: float16 matmuls there are slow or missing, so it is offered only on accelerators."""

CACHE_TTL_ENV = "INTERP_DASHBOARD_CACHE_TTL"


def _cache_ttl() -> float:
    raw = os.environ.get(CACHE_TTL_ENV, "600")
    try:
        ttl = float(raw)
    except ValueError:
        ttl = float("nan")
    if not ttl > 0 or ttl == float("inf"):
        raise ValueError(f"{CACHE_TTL_ENV}={raw!r}; give the cache lifetime in seconds, a number > 0")
    return ttl


CACHE_TTL = _cache_ttl()
"""Seconds an entry of any dashboard cache lives (``$INTERP_DASHBOARD_CACHE_TTL``, default 600), read at start-up."""

USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, IndexError)
"""Exceptions the library raises for bad input; shown as the reason, without a type name."""


class ModelKey(NamedTuple):
    """What identifies a model in the caches: resolved name or path, device, dtype, and the edit on it."""

    name: str
    device: str
    dtype: str
    edit: str | None = None
    """:func:`edit_id` of the ROME edit the result was computed under, ``None`` for the unedited model."""


@dataclass
class Context:
    """What a page needs: the shared model, its cache key, shape facts and the sidebar prompt."""

    model: Any
    key: ModelKey
    info: interp.ModelInfo
    prompt: str


@st.cache_resource(max_entries=4, ttl=CACHE_TTL, show_spinner=False)
def load_model(name: str, device: str, dtype: str) -> Any:
    """Load a model once per (name, device, dtype) for every session.

    The returned bridge is shared: pages must not modify it outside :func:`edited` (which holds its lock).
    ``name`` must come from :func:`resolve_model`; this function does not check it.
    """
    return interp.load(name, device=device, dtype=dtype)


def edit_id(edit: Any) -> str | None:
    """Identify a ROME edit in cache keys: a hash of its request, layer and vectors (``None`` for no edit).

    Two sessions that made the same edit share results; an edited result never answers an unedited key.
    """
    if edit is None:
        return None
    digest = hashlib.sha256(json.dumps([edit.layer, edit.request, edit.fingerprint], sort_keys=True).encode())
    for vector in (edit.left, edit.right):
        digest.update(vector.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def edited(model: Any, edit: Any = None) -> Iterator[Any]:
    """Hold ``model``'s lock for the block, with ``edit`` applied in it (if given) and undone on exit.

    Other sessions wait for the lock, so they see the model either before the edit or after its undo,
    which restores the weights bit for bit. This is how a session computes on its edited model without a
    copy of it.
    """
    with model_lock(model):
        if edit is None:
            yield model
            return
        edit.apply(model)
        try:
            yield model
        finally:
            edit.undo()


def holding(ctx: Context) -> contextlib.AbstractContextManager[Any]:
    """Hold the shared model's lock around a direct library call on ``ctx.model`` (no edit)."""
    return edited(ctx.model)


def cached(func: Callable[..., Any], key: ModelKey, /, *args: Any, edit: Any = None, **kwargs: Any) -> Any:
    """Call ``func(model, *args, **kwargs)`` on the shared model and cache the result per input.

    Results go to ``st.cache_data`` (each caller gets its own unpickled copy); results that cannot
    be pickled (e.g. ones holding a tokenizer or a closure) go to ``st.cache_resource`` instead,
    shared read-only between sessions. Both are bounded in entries and live :data:`CACHE_TTL` seconds.
    Unedited results the warm-up pinned (:func:`pin`) are answered from the pinned store first.

    Args:
        func: A library function taking the model first, e.g. ``interp.activation_view``,
            ``interp.TunedLens.load_for`` or ``probes.fit``.
        key: The model's :class:`ModelKey` (the model itself is not hashable).
        *args: Further positional arguments (hashable, e.g. the prompt and a layer).
        edit: A session's (unapplied) ``interp.rome.Edit``: ``func`` runs with it applied, under the
            model's lock, and the result is cached under the edit's :func:`edit_id`.
        **kwargs: Keyword arguments.

    Returns:
        The function's result.

    Raises:
        TypeError: ``func`` has no importable name (a lambda, a nested function, a partial), so it
            could not be told apart from another function in the caches.
    """
    name = cache_name(func)
    key = ModelKey(*key[:3], edit_id(edit))
    if key.edit is None:
        found = _pinned(_pin_key(name, key, args, kwargs))
        if found is not _MISSING:
            return found
    if name not in _UNPICKLABLE:
        try:
            return _cached_data(name, func, key, edit, *args, **kwargs)
        except Exception as err:
            # st.cache_data pickles results; pickle's own errors come through as they are.
            if not isinstance(err, UnserializableReturnValueError) and "pickle" not in str(err).lower():
                raise
            _UNPICKLABLE.add(name)
    return _cached_resource(name, func, key, edit, *args, **kwargs)


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


def _compute(func: Callable[..., Any], key: ModelKey, edit: Any, args: tuple, kwargs: dict) -> Any:
    with edited(shared_model(*key[:3]), edit) as model:
        return func(model, *args, **kwargs)


MAX_PINNED = 48
"""Most results :func:`pin` keeps (the warm-up's defaults of one model need about twenty)."""

_MISSING = object()
_PINNED: dict[tuple, tuple[bool, Any]] = {}  # key -> (pickled?, pickle bytes or the shared object)
_PINNING: dict[tuple, threading.Event] = {}  # keys being computed by pin(), set when done
_PINNED_MODELS: dict[tuple[str, str, str], Any] = {}
_PIN_GUARD = threading.Lock()


def pin_model(name: str, device: str, dtype: str) -> Any:
    """Load a model through :func:`load_model` and keep it for the server's life (see :func:`shared_model`)."""
    model = _PINNED_MODELS[(name, device, dtype)] = load_model(name, device, dtype)
    return model


def shared_model(name: str, device: str, dtype: str) -> Any:
    """The shared model: the pinned one if :func:`pin_model` kept it, else :func:`load_model`'s."""
    model = _PINNED_MODELS.get((name, device, dtype))
    return load_model(name, device, dtype) if model is None else model


def pin(func: Callable[..., Any], key: ModelKey, /, *args: Any, **kwargs: Any) -> bool:
    """Compute ``func(model, *args, **kwargs)`` on the unedited model and keep it for the server's life.

    :func:`cached` with the same function and arguments (and no edit) answers from this store first, each
    caller getting its own unpickled copy (results that cannot be pickled are shared, like
    ``st.cache_resource``'s). A :func:`cached` call that asks for a result being pinned waits for it instead
    of computing it again. The store holds at most :data:`MAX_PINNED` results and has no time bound.

    Returns:
        Whether a result was computed (False: already pinned, or the store is full).

    Raises:
        TypeError: an argument is not hashable, so it could not be found again.
    """
    pin_key = _pin_key(cache_name(func), ModelKey(*key[:3]), args, kwargs)
    if pin_key is None:
        raise TypeError(f"cannot pin {cache_name(func)}: its arguments are not hashable")
    with _PIN_GUARD:
        if pin_key in _PINNED or pin_key in _PINNING or len(_PINNED) + len(_PINNING) >= MAX_PINNED:
            return False
        done = _PINNING[pin_key] = threading.Event()
    try:
        result = _compute(func, ModelKey(*key[:3]), None, args, kwargs)
        try:
            entry = (True, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:  # noqa: BLE001 - what st.cache_data could not pickle either: share it read-only
            entry = (False, result)
        with _PIN_GUARD:
            _PINNED[pin_key] = entry
    finally:
        with _PIN_GUARD:
            _PINNING.pop(pin_key)
        done.set()
    return True


def pinned_bytes(func: Callable[..., Any], key: ModelKey, /, *args: Any, **kwargs: Any) -> bytes | None:
    """The pickle of a pinned result (None if it is not pinned or could not be pickled)."""
    entry = _PINNED.get(_pin_key(cache_name(func), ModelKey(*key[:3]), args, kwargs))
    return entry[1] if entry is not None and entry[0] else None


def pin_pickled(data: bytes, func: Callable[..., Any], key: ModelKey, /, *args: Any, **kwargs: Any) -> None:
    """Pin a result pickled earlier (by :func:`pinned_bytes`, for the same weights and library code).

    Raises:
        TypeError: an argument is not hashable.
        Exception: ``data`` does not unpickle (pickle's own error).
    """
    pin_key = _pin_key(cache_name(func), ModelKey(*key[:3]), args, kwargs)
    if pin_key is None:
        raise TypeError(f"cannot pin {cache_name(func)}: its arguments are not hashable")
    pickle.loads(data)  # refuse what no longer unpickles before any visitor reads it
    with _PIN_GUARD:
        if len(_PINNED) + len(_PINNING) < MAX_PINNED:
            _PINNED[pin_key] = (True, data)


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return (type(value).__name__, *map(_freeze, value))
    if isinstance(value, dict):
        return ("dict", *sorted((k, _freeze(v)) for k, v in value.items()))
    hash(value)
    return value


def _pin_key(name: str, key: ModelKey, args: tuple, kwargs: dict) -> tuple | None:
    try:
        return (name, tuple(key), _freeze(args), _freeze(kwargs))
    except TypeError:  # unhashable arguments are never pinned
        return None


def _pinned(pin_key: tuple | None) -> Any:
    if pin_key is None:
        return _MISSING
    with _PIN_GUARD:
        computing = _PINNING.get(pin_key)
        model = _PINNED_MODELS.get(pin_key[1][:3])
    if computing is not None:
        if model is not None and model_lock(model).held_by_me():
            return _MISSING  # the pinning thread needs the lock this thread holds: compute here instead
        computing.wait()
    with _PIN_GUARD:
        entry = _PINNED.get(pin_key)
    if entry is None:
        return _MISSING
    pickled, value = entry
    return pickle.loads(value) if pickled else value


# ``name`` identifies the function in the cache key and ``key.edit`` the edit; ``_func`` and ``_edit`` are
# left out of the hash (Streamlit cannot hash them) and are only used.
@st.cache_data(max_entries=128, ttl=CACHE_TTL, show_spinner=False)
def _cached_data(name: str, _func: Callable[..., Any], key: ModelKey, _edit: Any, /, *args: Any, **kwargs: Any) -> Any:
    return _compute(_func, key, _edit, args, kwargs)


@st.cache_resource(max_entries=64, ttl=CACHE_TTL, show_spinner=False)
def _cached_resource(
    name: str, _func: Callable[..., Any], key: ModelKey, _edit: Any, /, *args: Any, **kwargs: Any
) -> Any:
    return _compute(_func, key, _edit, args, kwargs)


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


def dtypes(device: str) -> tuple[str, ...]:
    """Dtypes the sidebar offers on ``device``: :data:`CPU_DTYPES` on the CPU, :data:`DTYPES` elsewhere."""
    return CPU_DTYPES if device == "cpu" else DTYPES


def sidebar() -> None:
    """Draw the sidebar inputs (model picker, own-model field, device, dtype, prompt).

    What they return is kept under :data:`SIDEBAR` for the page that runs next: reading widget
    values back by key is not reliable before a widget has been changed once. Nothing is checked
    here; :func:`context` checks (inside :func:`run_page`, so errors are shown on the page).
    """
    with st.sidebar:
        name = st.selectbox("Model", interp.reference.names(), key="model_name", help="An embedded reference model.")
        own = st.text_input(
            "…or your own model",
            key="model_path",
            placeholder="checkpoint folder under the model roots" + (" or hub name" if hub_allowed() else ""),
            help="When filled in, this is used instead of the embedded model above.",
        )
        left, right = st.columns(2)
        device = left.selectbox("Device", devices(), key="device")
        offered = dtypes(device)
        if st.session_state.get("dtype") not in offered:
            st.session_state["dtype"] = offered[0]  # e.g. float16 chosen on cuda, then the device set to cpu
        dtype = right.selectbox("Dtype", offered, key="dtype")
        # No max_chars: Streamlit would cut a longer text silently; prompt() refuses it, naming the cap.
        prompt = st.text_area("Prompt", value=DEFAULT_PROMPT, key="prompt", height=100,
                              help=f"At most {CAPS['prompt']} characters.")
    st.session_state[SIDEBAR] = ((own or "").strip() or name, device, dtype, prompt)


def model_key() -> ModelKey:
    """The :class:`ModelKey` the sidebar currently selects, its name checked by :func:`resolve_model`.

    Raises:
        ValueError: the model is not one this dashboard may load, or the dtype is not offered on the device.
    """
    name, device, dtype, _ = st.session_state[SIDEBAR]
    if dtype not in dtypes(device):
        raise ValueError(f"dtype={dtype!r} is not offered on {device}; choose one of {', '.join(dtypes(device))}")
    return ModelKey(resolve_model(name), device, dtype)


def prompt() -> str:
    """The sidebar's prompt.

    Raises:
        ValueError: the prompt is over its cap (:data:`CAPS`).
    """
    return check_text("prompt", st.session_state[SIDEBAR][3])


def context(need_prompt: bool = True) -> Context:
    """Load (or fetch from cache) the selected model and read the prompt.

    Raises:
        ValueError: the prompt is empty (when ``need_prompt``) or over its cap, or the model is not
            allowed or cannot be loaded.
        FileNotFoundError: a file of the model is missing.
    """
    key = model_key()
    text = prompt()
    if need_prompt and not text.strip():
        raise ValueError("the prompt is empty; type a prompt in the sidebar")
    with st.spinner(f"Loading {display_name(key.name)} ({key.device}, {key.dtype})…"):
        model = shared_model(*key[:3])
    return Context(model=model, key=key, info=interp.model_info(model), prompt=text)


def run_page(render: Callable[[], None]) -> None:
    """Run a page body, showing any exception as ``st.error`` with its reason (never a traceback or a server path)."""
    try:
        render()
    except USER_ERRORS as err:
        st.error(scrub(_message(err)))
    except Exception as err:  # the app must never show a traceback, whatever the library raises
        st.error(f"{type(err).__name__}: {scrub(_message(err))}")


def token_labels(tokens: list[str]) -> list[str]:
    """``"pos: 'token'"`` labels for token pickers (positions disambiguate repeated tokens)."""
    return [f"{i}: {t!r}" for i, t in enumerate(tokens)]


def _message(err: BaseException) -> str:
    # KeyError's str() wraps the message in quotes; show the bare reason.
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return str(text) or type(err).__name__
