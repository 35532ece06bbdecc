"""One lock per model: what makes a shared model safe to use from many threads.

TransformerLens hooks are attributes of the model's modules, and a ROME edit changes its weights in place,
so two threads running analyses on one model object would see each other's hooks and edits. Every public
entry point that runs a model, attaches hooks or changes weights holds the model's lock for its whole
call (:func:`holds_model`, or ``with model_lock(model):``); :func:`interp.capture` and
:func:`interp.core.hooks.hooked` take it too, so nothing attaches a hook without it.

The lock is re-entrant (an analysis may call others on the same model) and fair: threads get the model in
the order they asked for it, so a waiting thread waits for at most the analyses queued before it, never
for an unbounded stream of later ones.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class FairRLock:
    """A re-entrant lock granted in arrival order (first come, first served).

    Examples:
        >>> lock = FairRLock()
        >>> with lock, lock:  # re-entrant in the owning thread
        ...     lock.held_by_me()
        True
        >>> lock.held_by_me()
        False
    """

    def __init__(self) -> None:
        """Make an unheld lock."""
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: collections.deque[int] = collections.deque()

    def acquire(self) -> bool:
        """Take the lock, waiting behind every thread that asked before; returns True."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            self._queue.append(me)
            while self._owner is not None or self._queue[0] != me:
                self._cond.wait()
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        """Give the lock back; the longest-waiting thread gets it when the owner's last hold ends.

        Raises:
            RuntimeError: the calling thread does not hold the lock.
        """
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release() of a model lock that this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def held_by_me(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> FairRLock:
        """Acquire."""
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        """Release."""
        self.release()


_LOCKS: weakref.WeakKeyDictionary[Any, FairRLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_ATTRIBUTE = "_interp_model_lock"


def model_lock(model: Any) -> FairRLock:
    """The lock of ``model`` (made on first use, shared by every thread, gone with the model).

    Kept beside the model rather than on it, so that ``copy.deepcopy(model)`` gets a lock of its own.
    """
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = _LOCKS[model] = FairRLock()
        except TypeError:  # not weak-referenceable (a duck-typed stand-in): the lock lives on the object
            lock = getattr(model, _ATTRIBUTE, None)
            if lock is None:
                lock = FairRLock()
                setattr(model, _ATTRIBUTE, lock)
        return lock


@contextlib.contextmanager
def holding(*models: Any) -> Iterator[None]:
    """Hold the locks of one or more models for the ``with`` block.

    Several models are locked in a fixed order (by ``id``), so two threads that each need the same pair
    cannot deadlock.
    """
    with contextlib.ExitStack() as stack:
        for model in sorted({id(m): m for m in models}.values(), key=id):
            stack.enter_context(model_lock(model))
        yield


def holds_model(func: F) -> F:
    """Decorate a public entry point whose first argument is the model: it runs holding the model's lock.

    Examples:
        >>> @holds_model
        ... def n_params(model):
        ...     return sum(p.numel() for p in model.parameters())
    """

    @functools.wraps(func)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        with model_lock(model):
            return func(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def holds_models(*names: str) -> Callable[[F], F]:
    """Like :func:`holds_model` for functions whose models are the arguments ``names`` (any position).

    For methods (``TunedLens.apply(self, model, ...)``) and functions of two models
    (``speculative_generate(target, draft, ...)``); the models are locked in a fixed order (see :func:`holding`).

    Raises:
        ValueError: at decoration time, a name is not a parameter of the function.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        unknown = [n for n in names if n not in signature.parameters]
        if unknown:
            raise ValueError(
                f"{func.__qualname__} has no parameter {unknown}; parameters: {list(signature.parameters)}"
            )

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs).arguments
            with holding(*(bound[n] for n in names if bound.get(n) is not None)):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
