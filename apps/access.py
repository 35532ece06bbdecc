"""What a dashboard visitor may type and load, and what they may see of the server.

Caps on every text input, the own-model field's allow-list (embedded models, folders under
``$INTERP_DASHBOARD_ROOTS``, hub names only with ``$INTERP_DASHBOARD_HUB=1``) and the scrubbing of server
paths from messages. :mod:`app_shell` re-exports these names; pages use them through it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import interp
from interp.core import embedded

CAPS = {"prompt": 2000, "model": 300, "fact prompt": 500, "subject": 200, "target": 100, "paraphrase": 500,
        "lens target": 100, "analogy": 200}
"""Longest text, in characters, each text input accepts (longer is refused with a ValueError naming the cap)."""

MAX_PARAPHRASES = 20
"""Most lines the fact editor's paraphrase box accepts (they are scored as one batch)."""

ROOTS_ENV = "INTERP_DASHBOARD_ROOTS"
HUB_ENV = "INTERP_DASHBOARD_HUB"


def check_text(what: str, text: str, cap: int | None = None) -> str:
    """Return ``text`` if it is at most ``cap`` characters (default ``CAPS[what]``).

    Raises:
        ValueError: naming the input, its length and the cap.
    """
    cap = CAPS[what] if cap is None else cap
    if len(text) > cap:
        raise ValueError(f"the {what} is {len(text)} characters long; the cap is {cap} characters")
    return text


def roots() -> list[Path]:
    """The folders ``$INTERP_DASHBOARD_ROOTS`` lists (``:``-separated), symlinks and ``..`` resolved."""
    return [Path(os.path.realpath(p)) for p in os.environ.get(ROOTS_ENV, "").split(":") if p.strip()]


def hub_allowed() -> bool:
    """Whether the operator lets visitors load hub names (``$INTERP_DASHBOARD_HUB=1``)."""
    return os.environ.get(HUB_ENV) == "1"


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")


def resolve_model(text: str) -> str:
    """What the own-model field may load: the name to pass to :func:`load_model`.

    Allowed are the embedded models, checkpoint folders under one of :func:`roots` (absolute, or relative
    to a root; symlinks and ``..`` are resolved before the containment check) and, only when
    ``$INTERP_DASHBOARD_HUB`` is ``1``, Hugging Face Hub names. Nothing else is touched: in particular no
    hub request is made for a refused name.

    Raises:
        ValueError: the field is over its cap, or the model is not allowed. The refusal is one message
            whether or not such a path exists on the server.
    """
    text = check_text("model", text).strip()
    if text in interp.reference.names():
        return text
    for root in roots():
        candidate = Path(os.path.realpath(root / text))  # an absolute text replaces the root
        if (candidate == root or root in candidate.parents) and candidate.is_dir():
            return str(candidate)
    hub = hub_allowed()
    # interp.load takes a name that exists as a local path for a folder, so such a name is not a hub name here.
    if hub and _HUB_ID.fullmatch(text) and not os.path.lexists(text) and ".." not in text.split("/"):
        return text
    allowed = "the embedded models (" + ", ".join(interp.reference.names()) + ")"
    allowed += ", checkpoint folders under the model roots the operator listed" if roots() else ""
    allowed += ", Hugging Face Hub names" if hub else ""
    raise ValueError(f"model {text!r} is not available on this dashboard; it loads {allowed}")


def scrub(message: str) -> str:
    """Remove server paths from a message shown to a visitor.

    Paths under the embedded checkpoints folder or a model root become relative to it (a model folder
    becomes its display name); any other absolute path is cut to its last component.
    """
    for base in sorted({*roots(), embedded.CHECKPOINTS.resolve()}, key=lambda p: -len(str(p))):
        message = message.replace(str(base) + os.sep, "").replace(str(base), "<model root>")
    return re.sub(r"(?<![\w.~/])/(?:[^\s/'\"():,]+/)+(?=[^\s/'\"():,])", "", message)
