"""The dashboard's start-up warm-up (apps/warm.py) and its pinned store in app_shell (issue #24).

Split from tests/test_dashboard.py, whose fixtures it shares: the tiny models load through the own-model
field with pytest's temporary folder as the operator's model root.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from test_dashboard import PAGES, _app, _model_root, _shared_model  # noqa: F401 (_model_root: autouse fixture)

import interp

# --- warm-up (apps/warm.py) and the pinned store of app_shell ---------------------------------------------------

_PROBE_CALLS: list[str] = []
_SITE = "blocks.0.hook_resid_pre"
_SLOW_STARTED = threading.Event()
_SLOW_RELEASE = threading.Event()


def _probe_sum(model, prompt):
    # Module level, so app_shell can name it in cache keys.
    _PROBE_CALLS.append(prompt)
    return {"sum": float(interp.capture(model, prompt, names=[_SITE])[_SITE].sum())}


def _slow_probe(model, prompt):
    _SLOW_STARTED.set()
    assert _SLOW_RELEASE.wait(60)
    return _probe_sum(model, prompt)


class _FakeEdit:
    """What app_shell needs of an Edit: the fields edit_id hashes, apply and undo (no-ops here)."""

    layer, request, fingerprint = 0, {"subject": "x"}, "f"
    left = right = torch.zeros(2)

    def apply(self, model):
        self.model = model

    def undo(self):
        self.model = None


@pytest.fixture
def fresh_store(monkeypatch):
    import app_shell

    for name in ("_PINNED", "_PINNING", "_PINNED_MODELS"):
        monkeypatch.setattr(app_shell, name, {})
    _PROBE_CALLS.clear()
    return app_shell


def test_every_first_visit_call_is_warmed(tiny_gpt2_dir, monkeypatch):
    # Spy on app_shell.cached while each page runs with the sidebar's defaults: every call must be in warm.plan.
    import app_shell
    import warm

    seen = []
    real = app_shell.cached

    def spy(func, key, /, *args, edit=None, **kwargs):
        if edit is None:
            seen.append((app_shell.cache_name(func), app_shell._freeze(args), app_shell._freeze(kwargs)))
        return real(func, key, *args, edit=edit, **kwargs)

    monkeypatch.setattr(app_shell, "cached", spy)
    for page in [*PAGES, "features", "circuits"]:
        _app(tiny_gpt2_dir, page=page)
    planned = {(app_shell.cache_name(c.func), app_shell._freeze(c.args), app_shell._freeze(c.kwargs))
               for c in warm.plan(_shared_model(tiny_gpt2_dir), app_shell.DEFAULT_PROMPT)}
    import probes

    assert {app_shell.cache_name(interp.head_census), app_shell.cache_name(probes.fit)} <= {s[0] for s in seen}
    missing = [s for s in seen if s not in planned]
    assert not missing, f"first-visit calls the warm-up does not compute (update apps/warm.py plan): {missing}"


def test_pinned_results_answer_unedited_keys_only(tiny_gpt2_dir, fresh_store):
    app_shell = fresh_store
    key = app_shell.ModelKey(app_shell.resolve_model(str(tiny_gpt2_dir)), "cpu", "float32")
    model = app_shell.pin_model(*key[:3])
    assert app_shell.shared_model(*key[:3]) is model
    assert app_shell.pin(_probe_sum, key, "the cat sat") is True
    assert app_shell.pin(_probe_sum, key, "the cat sat") is False  # already pinned: not computed again
    assert _PROBE_CALLS == ["the cat sat"]

    first = app_shell.cached(_probe_sum, key, "the cat sat")
    first["sum"] = "changed by a page"  # each caller gets its own copy
    again = app_shell.cached(_probe_sum, key, "the cat sat")
    assert _PROBE_CALLS == ["the cat sat"]  # answered from the pinned store
    expected = float(interp.capture(model, "the cat sat", names=[_SITE])[_SITE].sum())
    assert again == {"sum": pytest.approx(expected, rel=1e-6)}

    # An edited session's key never reads the pinned (unedited) result.
    edit = _FakeEdit()
    app_shell.cached(_probe_sum, key, "the cat sat", edit=edit)
    assert _PROBE_CALLS == ["the cat sat", "the cat sat"]
    with pytest.raises(TypeError, match="not hashable"):
        app_shell.pin(_probe_sum, key, ["a", {"unhashable": set()}])


def test_a_visitor_waits_for_the_result_being_pinned_instead_of_computing_it(tiny_gpt2_dir, fresh_store):
    app_shell = fresh_store
    key = app_shell.ModelKey(app_shell.resolve_model(str(tiny_gpt2_dir)), "cpu", "float32")
    app_shell.pin_model(*key[:3])
    _SLOW_STARTED.clear()
    _SLOW_RELEASE.clear()
    warmer = threading.Thread(target=app_shell.pin, args=(_slow_probe, key, "a dog ran"))
    warmer.start()
    assert _SLOW_STARTED.wait(60)
    answers = []
    visitor = threading.Thread(target=lambda: answers.append(app_shell.cached(_slow_probe, key, "a dog ran")))
    visitor.start()
    time.sleep(0.2)
    assert not answers  # waiting for the warm-up's result
    _SLOW_RELEASE.set()
    warmer.join(60)
    visitor.join(60)
    assert _PROBE_CALLS == ["a dog ran"] and len(answers) == 1


def test_a_pinned_result_read_back_from_its_pickle_is_served_without_computing(tiny_gpt2_dir, fresh_store,
                                                                                 monkeypatch):
    app_shell = fresh_store
    key = app_shell.ModelKey(app_shell.resolve_model(str(tiny_gpt2_dir)), "cpu", "float32")
    app_shell.pin_model(*key[:3])
    app_shell.pin(_probe_sum, key, "one two")
    data = app_shell.pinned_bytes(_probe_sum, key, "one two")
    expected = app_shell.cached(_probe_sum, key, "one two")
    monkeypatch.setattr(app_shell, "_PINNED", {})  # a restarted server
    app_shell.pin_pickled(data, _probe_sum, key, "one two")
    assert app_shell.cached(_probe_sum, key, "one two") == expected
    assert _PROBE_CALLS == ["one two"]
    with pytest.raises(Exception):  # noqa: B017 - pickle's own error: a stale file is refused, not served
        app_shell.pin_pickled(b"not a pickle", _probe_sum, key, "three")


def test_the_warm_up_can_be_turned_off(monkeypatch):
    import warm

    monkeypatch.setenv("INTERP_DASHBOARD_WARM", "0")
    assert warm.start() is None and not warm._STARTED.is_set()
