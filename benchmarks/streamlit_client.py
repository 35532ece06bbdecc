"""A minimal Streamlit browser stand-in: one session over the real websocket, driven with Streamlit's own protobufs.

A browser talks to ``/_stcore/stream`` in ``BackMsg`` / ``ForwardMsg`` protobufs: it sends
``BackMsg(rerun_script=ClientState(...))`` with the page to run and every widget value it holds,
and the server streams the run back (``new_session``, ``navigation``, one ``delta`` per element,
then ``script_finished``). :class:`Session` does the same with the ``websockets`` client (a Streamlit
dependency), so a load test exercises the real server: its threads, caches and session state.

Widgets are found in the last run's deltas by their user key (the suffix of Streamlit's element
id) or by the start of their label, so the driver needs no knowledge of Streamlit's id hashing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

WIDGET_KINDS = ("slider", "selectbox", "radio", "text_input", "text_area", "button", "number_input", "checkbox")
"""Element types that are widgets this client can set."""

MAX_MESSAGE_BYTES = 256 * 2**20
"""Largest ForwardMsg accepted (plotly figures with every head are a few MB; the default 1 MiB is too small)."""


class RerunTimeout(TimeoutError):
    """The server did not finish a rerun within the per-rerun timeout."""


@dataclass
class Widget:
    """One widget of the last run: its element id, type, label, user key and (formatted) options."""

    id: str
    kind: str
    label: str
    key: str
    options: list[str]
    disabled: bool


@dataclass
class RunResult:
    """What one rerun showed: its time, finish status, the page's values, and any errors on it."""

    seconds: float
    status: str
    values: list[tuple[str, str]]
    """(element kind, value digest) in page order, for elements whose content is the page's result."""
    figures: list[tuple[str, str]]
    """(element kind, digest of the plotly spec) in page order."""
    errors: list[str]
    widgets: dict[str, Widget] = field(default_factory=dict)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _arrow_rows(data: bytes) -> str:
    # The decoded table, not the IPC bytes: the bytes carry pandas metadata that need not be stable.
    import pyarrow as pa

    if not data:
        return ""
    table = pa.ipc.open_stream(data).read_all()
    return repr(table.to_pydict())


def _element_value(kind: str, element: Any) -> str | None:
    """The comparable value of a result element, or None for elements that are not results."""
    if kind in ("markdown", "text", "heading"):
        return element.body
    if kind == "code":
        return element.code_text
    if kind == "metric":
        return f"{element.label}|{element.body}|{element.delta}"
    if kind == "alert":
        return f"{element.format}|{element.body}"
    if kind in ("dataframe", "table"):
        if kind == "dataframe" and element.HasField("lazy_data"):
            return _arrow_rows(element.lazy_data.initial_chunk.data)
        return _arrow_rows(element.arrow_data.data)
    return None


def _widget(kind: str, element: Any) -> Widget:
    key = element.id.rsplit("-", 1)[-1] if element.id.startswith("$$ID") else ""
    options = [str(o) for o in getattr(element, "options", [])] if kind in ("selectbox", "radio") else []
    return Widget(element.id, kind, element.label, key, options, bool(getattr(element, "disabled", False)))


class Session:
    """One browser session on a Streamlit server.

    Args:
        url: The websocket URL, e.g. ``ws://127.0.0.1:8501/_stcore/stream``.
        timeout: Seconds one rerun may take before :class:`RerunTimeout`.
    """

    def __init__(self, url: str, timeout: float) -> None:  # noqa: D107 - documented on the class
        self.url = url
        self.timeout = timeout
        self.pages: dict[str, str] = {}
        """url_pathname -> page_script_hash, from the server's navigation message."""
        self.widgets: dict[str, Widget] = {}
        """The widgets of the last run, by element id."""
        self.states: dict[str, WidgetState] = {}
        """Widget values this session has set (kept and re-sent, as a browser does)."""
        self._clicks: list[WidgetState] = []
        """Button clicks for the next rerun only (a trigger is sent once)."""
        self._page_hash = ""
        self._ws: Any = None

    async def __aenter__(self) -> Session:
        """Open the websocket (no rerun yet: the server runs nothing until asked)."""
        import websockets

        self._ws = await websockets.connect(self.url, max_size=MAX_MESSAGE_BYTES, open_timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the websocket; the server then disconnects the session."""
        if self._ws is not None:
            await self._ws.close()

    def find(self, selector: str, kind: str | None = None) -> Widget:
        """The widget of the last run whose user key is ``selector``, or whose label starts with it (case-insensitive).

        Raises:
            KeyError: no widget, or more than one, matches.
        """
        candidates = [w for w in self.widgets.values() if kind is None or w.kind == kind]
        hits = [w for w in candidates if w.key == selector]
        if not hits:
            hits = [w for w in candidates if w.label.lower().startswith(selector.lower())]
        if len(hits) != 1:
            have = sorted(w.key or w.label for w in candidates)
            raise KeyError(f"{len(hits)} widgets match {selector!r}; the page has {have}")
        return hits[0]

    def set(self, selector: str, value: Any) -> None:
        """Set a widget of the last run for the next rerun (buttons: any value means "click")."""
        widget = self.find(selector)
        state = WidgetState(id=widget.id)
        if widget.kind == "button":
            state.trigger_value = True
            self._clicks.append(state)
            return
        if widget.kind == "slider":
            state.double_array_value.data.append(float(value))
        elif widget.kind in ("selectbox", "radio"):
            text = str(value)
            matches = [o for o in widget.options if o == text] or [o for o in widget.options if text in o]
            if len(matches) != 1:
                raise KeyError(f"{widget.label!r}: {len(matches)} options match {text!r} in {widget.options}")
            state.string_value = matches[0]
        elif widget.kind in ("text_input", "text_area"):
            state.string_value = str(value)
        elif widget.kind == "number_input":
            state.double_value = float(value)
        elif widget.kind == "checkbox":
            state.bool_value = bool(value)
        self.states[widget.id] = state

    async def rerun(self, page: str | None = None) -> RunResult:
        """Run ``page`` (a url pathname such as ``"heads"``; None = the current one) with the widget values set.

        Returns:
            The run's :class:`RunResult`; its widgets become this session's :attr:`widgets`.

        Raises:
            RerunTimeout: no ``script_finished`` within the timeout.
        """
        clicks, self._clicks = self._clicks, []
        msg = BackMsg()
        client = msg.rerun_script
        client.query_string = ""
        client.widget_states.widgets.extend([*self.states.values(), *clicks])
        if page is not None:
            if page in self.pages:
                client.page_script_hash = self.pages[page]
            else:
                client.page_name = page
        elif self._page_hash:
            client.page_script_hash = self._page_hash
        start = time.perf_counter()
        await self._ws.send(msg.SerializeToString())
        elements: dict[tuple[int, ...], tuple[str, Any]] = {}
        errors: list[str] = []
        deadline = start + self.timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RerunTimeout(f"no script_finished within {self.timeout:g} s on page {page!r}")
            try:
                raw = await asyncio.wait_for(self._ws.recv(), left)
            except TimeoutError as err:
                raise RerunTimeout(f"no script_finished within {self.timeout:g} s on page {page!r}") from err
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                self._page_hash = fwd.new_session.page_script_hash
                self._note_pages(fwd.new_session.app_pages)
                elements.clear()  # a run starts: the page is rebuilt from scratch
            elif kind == "navigation":
                self._note_pages(fwd.navigation.app_pages)
                self._page_hash = fwd.navigation.page_script_hash or self._page_hash
            elif kind == "page_not_found":
                errors.append(f"page not found: {page!r}")
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                element_kind = element.WhichOneof("type")
                elements[tuple(fwd.metadata.delta_path)] = (element_kind, getattr(element, element_kind))
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(fwd.script_finished)
                if status == "FINISHED_EARLY_FOR_RERUN":
                    continue
                break
        seconds = time.perf_counter() - start
        return self._result(seconds, status, elements, errors)

    def _note_pages(self, app_pages: Any) -> None:
        for app_page in app_pages:
            self.pages[app_page.url_pathname] = app_page.page_script_hash

    def _result(self, seconds: float, status: str, elements: dict, errors: list[str]) -> RunResult:
        values, figures, widgets = [], [], {}
        if status != "FINISHED_SUCCESSFULLY":
            errors.append(f"script finished with {status}")
        for _, (kind, element) in sorted(elements.items()):
            if kind == "exception":
                errors.append(f"exception {element.type}: {element.message}")
            elif kind == "alert" and element.format == type(element).ERROR:
                errors.append(f"st.error: {element.body}")
            elif kind in WIDGET_KINDS:
                widgets[element.id] = _widget(kind, element)
            elif kind == "plotly_chart":
                figures.append((kind, _digest(element.spec.encode())))
            else:
                value = _element_value(kind, element)
                if value is not None:
                    values.append((kind, value))
        self.widgets = widgets
        # Drop values of widgets no longer on the page, as a browser's widget manager does.
        self.states = {wid: state for wid, state in self.states.items() if wid in widgets}
        return RunResult(seconds, status, values, figures, errors, widgets)
