"""Warm-up: compute what the first visitor of each page would otherwise wait for, when the server starts.

Streamlit runs the app's script only when a browser connects, so nothing of ours runs at start-up in a
plain ``streamlit run``. The start-up hook is ``st.App``'s lifespan: ``apps/dashboard.py``, when
``streamlit run`` imports it to look for an app (under its module name, not as ``__main__``), builds
``st.App(__file__, lifespan=warm.lifespan)``; Streamlit then serves the same file, run per session as
``__main__``, and enters :func:`lifespan` once per server process before it answers ``/_stcore/health``.
The lifespan starts one daemon thread (:func:`start`; a second call does nothing) and returns at once.

The thread loads the default model (the sidebar's defaults: the first embedded model, ``cpu``,
``float32``) with :func:`app_shell.pin_model`, then computes each page's default results (:func:`plan`:
the same function and arguments the page passes to :func:`app_shell.cached`, so the cache keys match) with
:func:`app_shell.pin`. Pinned results live for the server's life, outside the time-bounded Streamlit
caches, in a store bounded in entries; they are computed on the unedited model and found only by unedited
keys, so a session's ROME edit never sees them. Each result is one acquisition of the model's (fair,
first-come-first-served) lock, and the thread yields between them, so a visitor who asks for the model
waits for at most the one analysis in progress. After each result the thread also builds its figure and
table once, so plotly's and pyarrow's lazy imports are paid here too.

Computing everything takes about a minute on 2 cores (the head census, the induction report, the causal
trace and the probes are most of it), so each result is also written, pickled, to
``.interp_cache/dashboard/<model>-<hash>/`` (``$INTERP_DASHBOARD_WARM_DIR``; empty: no files), the hash
covering the model's files, the library's source and the Python, torch and transformers versions: a
restarted server reads them back in seconds, and any change of weights or code computes afresh (folders
of other versions are removed after an hour). The files are the server's own, written where its code lives.

``INTERP_DASHBOARD_WARM=0`` turns the warm-up off. AppTest sessions never start it (they run the script
as ``__main__`` only). The thread prints one line per result and a last ``interp dashboard: warm`` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WARM_ENV = "INTERP_DASHBOARD_WARM"
WARM_DIR_ENV = "INTERP_DASHBOARD_WARM_DIR"
ROOT = Path(__file__).resolve().parents[1]
DONE_LINE = "interp dashboard: warm"
"""Printed (to stderr) when every default is pinned; the browser test waits for it."""

_STARTED = threading.Event()
_START_GUARD = threading.Lock()
_DONE = threading.Event()


@dataclass(frozen=True)
class Call:
    """One default result of one page: ``app_shell.cached(func, key, *args, **kwargs)``."""

    page: str
    func: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def plan(model: Any, prompt: str) -> list[Call]:
    """What each page computes on a first visit with the sidebar's defaults, cheapest pages first.

    Mirrors the pages' default widget values; ``tests/test_dashboard.py`` checks that every call a page
    makes on its first visit is in this plan.
    """
    import interp
    import probes
    from interp import features
    from interp.circuits import circuit_faithfulness, find_circuit, task_patching
    from interp.core.hooks import hook_name
    from interp.rome.counterfact import score_targets

    last = len(interp.tokenize(model, prompt).tokens[0]) - 1  # the walkthrough follows the last token
    features_site = (features.shipped_sites(model) or [hook_name("resid_post", 0)])[0]  # the Features page's first
    fact_prompt = prompt[:500]
    pairs = [(fact_prompt, " Rome"), ("The Eiffel Tower is in the city of", " Rome"),
             ("The Louvre is located in the city of", " Paris")]
    return [
        Call("walkthrough", interp.journey.run, (prompt,),
             dict(layer=0, head=0, query=last, position=last, analogy_words=None)),
        Call("activations", interp.activation_view, (prompt, 0, "resid_pre")),
        Call("attention", interp.attention_view, (prompt, 0)),
        Call("logit_lens", interp.logit_lens, (prompt,), dict(target=None)),
        Call("sampling", interp.next_token, (prompt,), dict(temperature=1.5, top_k=20, top_p=0.9)),
        Call("heads", interp.head_census),
        Call("heads", interp.find_induction_heads),
        Call("heads", interp.knock_out_head, (prompt, 0, 0, "zero")),
        Call("fact_editor", interp.causal_trace, (fact_prompt, "The Eiffel Tower")),
        Call("fact_editor", score_targets, (pairs,)),
        Call("fact_editor", interp.generate, (fact_prompt,), dict(max_new_tokens=12, temperature=0.0, seed=0)),
        Call("probing", probes.fit, (probes.TASKS[0],), dict(site="resid_post")),
        # The Circuits page: the IOI task, EAP-IG over 8 prompts; the Features page: its first site's store.
        Call("circuits", task_patching, ("ioi", "resid_pre")),
        Call("circuits", task_patching, ("ioi", "z"), dict(positions="all")),
        Call("circuits", find_circuit, ("ioi", "eap-ig"), dict(n_prompts=8, progress=False)),
        Call("circuits", circuit_faithfulness, ("ioi", "eap-ig"), dict(n_prompts=8)),
        Call("features", features.world_store, ((features_site,),)),
        # One step beyond the defaults: the page's other lens, and the target its placeholder suggests.
        Call("logit_lens", interp.TunedLens.load_for),
        Call("logit_lens", interp.logit_lens, (prompt,), dict(target=" Paris")),
    ]


def warm(log: Callable[[str], None] | None = None) -> float:
    """Pin the default model and every :func:`plan` result; returns the seconds it took.

    One analysis per lock acquisition; a failing call is logged and skipped (the page will show its error).
    """
    log = log or _log
    began = time.monotonic()
    import app_shell

    import interp

    name, device = interp.reference.names()[0], app_shell.devices()[0]  # the sidebar's defaults
    dtype = app_shell.dtypes(device)[0]
    key = app_shell.ModelKey(app_shell.resolve_model(name), device, dtype)
    model = app_shell.pin_model(*key[:3])
    log(f"interp dashboard: warming {name} ({device}, {dtype}): model loaded in {time.monotonic() - began:.1f}s")
    store = _store(name)
    for call in plan(model, app_shell.DEFAULT_PROMPT):
        t0, what = time.monotonic(), app_shell.cache_name(call.func)
        named = repr((what, tuple(key), call.args, sorted(call.kwargs.items())))
        file = None if store is None else store / f"{_digest(named)}.pkl"
        try:
            source = "computed"
            try:
                if file is None:
                    raise FileNotFoundError("no store")
                app_shell.pin_pickled(file.read_bytes(), call.func, key, *call.args, **call.kwargs)
                source = "read from disk"
            except Exception:  # noqa: BLE001 - no file, or one this code no longer reads: compute it
                app_shell.pin(call.func, key, *call.args, **call.kwargs)
                data = app_shell.pinned_bytes(call.func, key, *call.args, **call.kwargs)
                if file is not None and data is not None:
                    with contextlib.suppress(OSError):
                        _write(file, data)
            _touch(app_shell.cached(call.func, key, *call.args, **call.kwargs))
        except Exception as err:  # noqa: BLE001 - warming is best effort; the page reports the error
            log(f"interp dashboard: warming {call.page}: {what} failed: {app_shell.scrub(str(err))[:200]}")
            continue
        log(f"interp dashboard: warmed {call.page}: {what} ({source}) in {time.monotonic() - t0:.1f}s")
        time.sleep(0.01)  # let a waiting visitor's thread run before the next acquisition
    seconds = time.monotonic() - began
    log(f"{DONE_LINE} ({seconds:.1f}s)")
    return seconds


def _store(name: str) -> Path | None:
    """This weights-and-code version's folder of pickled results (other versions' folders go after an hour).

    Named by a hash of the model's files, the library's source (``interp/``, ``probes/``, this file) and
    the versions of Python, torch and transformers, so a result is read back only by the code and weights
    that computed it. ``None`` (compute everything) when ``$INTERP_DASHBOARD_WARM_DIR`` is empty.
    """
    import torch
    import transformers

    import interp

    root = os.environ.get(WARM_DIR_ENV, str(ROOT / ".interp_cache" / "dashboard"))
    if not root:
        return None
    digest = hashlib.sha256(f"{sys.version} {torch.__version__} {transformers.__version__}".encode())
    files = sorted(Path(interp.reference.path(name)).rglob("*"))
    files += sorted(p for folder in ("interp", "probes") for p in (ROOT / folder).rglob("*.py")) + [Path(__file__)]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(path.parents[1])).encode() + path.read_bytes())
    folder = Path(root) / f"{name}-{digest.hexdigest()[:20]}"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)  # in use: not "old" for other servers
        for old in folder.parent.glob(f"{name}-*"):  # an hour's grace for servers running other code
            if old != folder and time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
    return folder


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write(file: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=file.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, file)


def _touch(result: Any) -> None:
    # Build the figure and the table once (outside the model lock) so lazy imports are not a visitor's wait.
    with contextlib.suppress(Exception):
        import plotly.io

        shown = result if hasattr(result, "figure") else result.tokens  # a journey: its first stage
        plotly.io.to_json(shown.figure())
    with contextlib.suppress(Exception):
        from streamlit import dataframe_util

        dataframe_util.convert_pandas_df_to_arrow_bytes(result.to_frame())


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run() -> None:
    try:
        warm()
    except Exception as err:  # noqa: BLE001 - a failed warm-up must not take the server down
        _log(f"interp dashboard: warm-up stopped: {type(err).__name__}: {err}")
    finally:
        _DONE.set()


def start() -> threading.Thread | None:
    """Start the warm-up thread once per process (unless ``$INTERP_DASHBOARD_WARM`` is ``0``)."""
    if os.environ.get(WARM_ENV, "1") == "0":
        return None
    with _START_GUARD:
        if _STARTED.is_set():
            return None
        _STARTED.set()
    thread = threading.Thread(target=_run, name="interp-dashboard-warm", daemon=True)
    thread.start()
    return thread


@contextlib.asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """``st.App`` lifespan: start the warm-up thread and serve at once (the thread runs beside the server)."""
    start()
    yield
