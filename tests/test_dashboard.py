"""AppTest tests of the Streamlit dashboard (apps/dashboard.py): every page, its widgets, bad input, edit isolation.

The tiny fixture models are loaded through the sidebar's own-model field (the real loading path), with
pytest's temporary folder as the operator's model root (``INTERP_DASHBOARD_ROOTS``); the reference
checkpoints are exercised in the slow test at the end.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import interp
from interp import reference
from interp.rome.counterfact import score_targets

APPS = Path(__file__).resolve().parents[1] / "apps"
ENTRY = APPS / "dashboard.py"
PAGES = ["walkthrough", "activations", "attention", "heads", "logit_lens", "fact_editor", "sampling", "probing"]
TIMEOUT = 600  # seconds per script run: pages fit probes or trace facts, and CI machines are slow


@pytest.fixture(autouse=True)
def _model_root(tmp_path_factory, monkeypatch):
    # The fixture checkpoints live under pytest's base temporary folder: let the dashboard load from there.
    monkeypatch.setenv("INTERP_DASHBOARD_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("INTERP_DASHBOARD_HUB", raising=False)
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))


def _app(model: str | Path, prompt: str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["model_path"] = str(model)
    if prompt is not None:
        at.session_state["prompt"] = prompt
    at.run()
    if page is not None:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _shared_model(model_dir: Path):
    # The very module object the pages import (the script runner puts apps/ on sys.path), so the
    # st.cache_resource entry below is the one every AppTest session shares.
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    import app_shell

    return app_shell.load_model(app_shell.resolve_model(str(model_dir)), "cpu", "float32")


def test_cache_keys_name_the_library_function():
    import interp
    import probes

    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    import app_shell

    funcs = [interp.head_census, interp.find_induction_heads, interp.TunedLens.load_for, probes.fit, interp.journey.run]
    names = [app_shell.cache_name(f) for f in funcs]
    assert len(set(names)) == len(names)
    assert names[2].endswith(".TunedLens.load_for")
    for unnamed in (lambda model: model, functools.partial(probes.fit), Path(".").resolve):
        with pytest.raises(TypeError, match="cannot cache"):
            app_shell.cache_name(unnamed)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_both_tiny_models(page, arch, request):
    at = _app(request.getfixturevalue(f"tiny_{arch}_dir"), page=page)
    assert at.title and at.title[0].value
    if page == "probing" and arch == "gpt2":
        # The probe tasks' prompts are longer than this tiny model's 32-token context: the page says so.
        assert not at.exception
        assert at.error and "context window" in at.error[0].value
        return
    _clean(at)
    assert _charts(at), f"page {page} drew no plotly figure"


def test_activations_widgets_change_the_heatmap(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="activations")
    first = _charts(at)[0]["data"][0]
    at.slider(key="act_layer").set_value(1).run()
    second = _charts(at)[0]["data"][0]
    assert second["z"] != first["z"]
    at.selectbox(key="act_site").set_value("neurons").run()
    at.slider(key="act_top_neurons").set_value(10).run()
    _clean(at)
    assert len(_charts(at)[0]["data"][0]["x"]) == 10
    before = at.metric[0].value
    at.selectbox(key="act_token").set_value(at.selectbox(key="act_token").options[0]).run()
    assert at.metric[0].value != before


def test_attention_head_and_layer_selection(tiny_llama_dir):
    at = _app(tiny_llama_dir, page="attention")
    grid, pattern = _charts(at)
    assert len(grid["data"]) == 4  # all heads in one grid
    assert "kv" in grid["layout"]["annotations"][0]["text"]  # GQA: shared KV head named
    at.selectbox(key="attn_head").set_value(3).run()
    _clean(at)
    assert _charts(at)[1]["data"][0]["z"] != pattern["data"][0]["z"]
    at.slider(key="attn_layer").set_value(1).run()
    assert _charts(at)[0]["data"][0]["z"] != grid["data"][0]["z"]


def test_attention_query_follows_a_new_prompt(tiny_gpt2_dir):
    # The query picker defaults to the last token; after the prompt changes it must not keep (or fall back
    # from) a choice made on the old prompt's tokens.
    at = _app(tiny_gpt2_dir, prompt="The cat sat on the mat", page="attention")
    picker = next(box for box in at.selectbox if box.label == "Query token")
    picker.set_value(picker.options[1]).run()
    _clean(at)
    at.session_state["prompt"] = "One two three four five six seven"
    at.run()
    _clean(at)
    picker = next(box for box in at.selectbox if box.label == "Query token")
    assert picker.value == picker.options[-1]


def test_heads_knockout_follows_the_selection(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="heads")
    title = _charts(at)[-1]["layout"]["title"]["text"]
    assert title.startswith("L0H0")
    at.selectbox(key="ko_layer").set_value(1).run()
    at.selectbox(key="ko_head").set_value(2).run()
    _clean(at)
    assert _charts(at)[-1]["layout"]["title"]["text"].startswith("L1H2")


def test_walkthrough_step_button_and_stage_selector(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="walkthrough")
    assert at.selectbox(key="walk_stage").value == "tokens"
    first = _charts(at)[0]
    at.button(key="walk_step").click().run()
    _clean(at)
    assert at.selectbox(key="walk_stage").value == "embeddings"
    assert _charts(at)[0] != first
    at.selectbox(key="walk_stage").set_value("residual").run()
    _clean(at)
    assert at.subheader[0].value.startswith("7")


def test_lens_target_and_sampling_sliders(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="logit_lens")
    plain = _charts(at)[0]
    at.text_input(key="lens_target").input("e").run()
    _clean(at)
    assert len(_charts(at)[0]["data"]) > len(plain["data"])  # the target's panel appears

    at.switch_page("app_pages/sampling.py").run()
    bars = _charts(at)[0]
    at.slider(key="samp_temperature").set_value(0.3).run()
    at.slider(key="samp_top_k").set_value(5).run()
    _clean(at)
    assert _charts(at)[0] != bars
    at.button(key="samp_generate").click().run()
    _clean(at)
    assert len(_charts(at)) == 2  # the generation's own figure


@pytest.mark.parametrize(
    ("prompt", "page", "reason"),
    [
        ("", "activations", "prompt is empty"),
        ("word " * 80, "attention", "context window"),
        ("the cat", "walkthrough", None),
    ],
)
def test_bad_prompts_show_an_error(tiny_gpt2_dir, prompt, page, reason):
    at = _app(tiny_gpt2_dir, prompt=prompt, page=page)
    assert not at.exception
    if reason is None:  # a good prompt, with an analogy word that is not one token
        at.text_input(key="walk_analogy").input("qzxv wrd, man, woman").run()
        reason = "token"
    assert at.error and reason in at.error[0].value


def test_bad_model_path_and_bad_target(tmp_path, tiny_gpt2_dir):
    at = _app(tmp_path / "no-such-model", page="activations")
    assert not at.exception
    assert at.error and "not available on this dashboard" in at.error[0].value
    at = _app(tiny_gpt2_dir, page="logit_lens")
    at.text_input(key="lens_target").input(" the cat sat").run()
    assert not at.exception
    assert at.error and "one token" in at.error[0].value


def test_fact_editor_subject_must_be_in_prompt(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="fact_editor")
    at.text_input(key="fe_subject").input("the Colosseum").run()
    assert not at.exception
    assert at.error and "does not occur in the prompt" in at.error[0].value


def test_fact_edit_is_per_session_and_the_shared_model_stays_bit_exact(tiny_gpt2_dir):
    shared = _shared_model(tiny_gpt2_dir)
    snapshot = {k: v.clone() for k, v in shared.state_dict().items()}

    alice = _app(tiny_gpt2_dir, page="fact_editor")
    _clean(alice)
    before = alice.dataframe[0].value
    alice.button(key="fe_apply").click().run()
    _clean(alice)
    edited = alice.dataframe[0].value
    assert "p after" in edited.columns
    # Whether ROME succeeds on a random tiny model is the ROME tests' business; here: the edit took effect
    # (had the cache ignored the edit, "p after" would be the cached unedited numbers).
    assert edited["p after"].tolist() != edited["p before"].tolist()
    change = alice.session_state["fact_edit"]["edit"]
    assert set(alice.session_state["fact_edit"]) == {"edit", "request"}  # vectors, no model copy
    assert not change.applied
    # The session's computation ran on the edited weights and left the one shared model bit-identical.
    assert all(torch.equal(shared.state_dict()[k], v) for k, v in snapshot.items())

    # Independent check: the same edit applied to a fresh copy of the model gives alice's "p after".
    fresh = interp.load(tiny_gpt2_dir, device="cpu")
    pairs = list(zip(edited["prompt"], edited["target"], strict=True))
    change.apply(fresh)
    expected = [math.exp(-nll) for nll, _ in score_targets(fresh, pairs)]
    change.undo()
    assert edited["p after"].tolist() == pytest.approx(expected, rel=1e-5)

    bob = _app(tiny_gpt2_dir, page="fact_editor")
    _clean(bob)
    assert "p after" not in bob.dataframe[0].value.columns
    assert bob.dataframe[0].value["p before"].tolist() == before["p before"].tolist()
    assert all(torch.equal(shared.state_dict()[k], v) for k, v in snapshot.items())

    alice.button(key="fe_undo").click().run()
    _clean(alice)
    assert "fact_edit" not in alice.session_state
    assert "p after" not in alice.dataframe[0].value.columns
    assert all(torch.equal(shared.state_dict()[k], v) for k, v in snapshot.items())


def test_cache_key_holds_the_edit(tiny_gpt2_dir):
    import app_shell

    at = _app(tiny_gpt2_dir, page="fact_editor")
    at.button(key="fe_apply").click().run()
    change = at.session_state["fact_edit"]["edit"]
    assert app_shell.edit_id(None) is None
    assert app_shell.edit_id(change) == app_shell.edit_id(change)
    other = type(change)(**{**vars(change), "right": change.right * 2})
    assert app_shell.edit_id(other) != app_shell.edit_id(change)


@pytest.mark.parametrize(("page", "key", "text", "cap"), [
    (None, "prompt", "x" * 2001, "2000 characters"),
    ("fact_editor", "fe_subject", "s" * 201, "200 characters"),
    ("fact_editor", "fe_target", "t" * 101, "100 characters"),
    ("fact_editor", "fe_extra", "\n".join(["The Louvre is in"] * 21), "20 lines"),
    ("fact_editor", "fe_extra", "p" * 501, "500 characters"),
    ("logit_lens", "lens_target", "t" * 101, "100 characters"),
    ("walkthrough", "walk_analogy", "a, " * 70, "200 characters"),
    (None, "model_path", "m" * 301, "300 characters"),
])
def test_text_over_its_cap_names_the_cap(tiny_gpt2_dir, page, key, text, cap):
    at = _app(tiny_gpt2_dir, page=page or "activations")
    _clean(at)
    at.session_state[key] = text  # what a client that ignores the browser's max_chars could send
    at.run()
    assert not at.exception
    assert at.error and cap in at.error[0].value and "cap" in at.error[0].value


def test_paths_outside_the_roots_are_refused_alike(tmp_path, tiny_gpt2_dir, tiny_llama_dir, monkeypatch):
    monkeypatch.setenv("INTERP_DASHBOARD_ROOTS", str(tiny_gpt2_dir))
    inside = tiny_gpt2_dir / "link"
    inside.symlink_to(tiny_llama_dir, target_is_directory=True)  # a symlink out of the root
    messages = []
    for typed in (tiny_llama_dir, tmp_path / "no-such-model", f"{tiny_gpt2_dir}/../{tiny_llama_dir.name}", inside,
                  "/etc"):
        at = _app(typed, page="activations")
        assert not at.exception
        assert at.error, typed
        messages.append(re.sub(r"^model '[^']*'", "model <typed>", at.error[0].value))
    assert len(set(messages)) == 1, messages  # one message: it does not tell which paths exist
    assert "exist" not in messages[0] and str(tiny_gpt2_dir) not in messages[0]
    _clean(_app(tiny_gpt2_dir, page="activations"))  # the root itself is allowed


def test_library_errors_show_no_server_paths(tmp_path_factory):
    empty = tmp_path_factory.mktemp("not-a-model")
    at = _app(empty, page="activations")
    assert at.error and "config.json" in at.error[0].value
    assert str(tmp_path_factory.getbasetemp()) not in at.error[0].value
    assert empty.name in at.error[0].value


def test_hub_names_need_the_operator_s_consent(tiny_gpt2_dir, monkeypatch):
    calls = []

    def no_hub(*args, **kwargs):
        calls.append(args)
        raise ValueError("hub reached")

    monkeypatch.setattr("interp.core.loading._load_from_hub", no_hub)
    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", no_hub)
    at = _app("gpt2", page="activations")
    assert at.error and "not available on this dashboard" in at.error[0].value
    assert calls == []  # refused before any hub call
    monkeypatch.setenv("INTERP_DASHBOARD_HUB", "1")
    at = _app("gpt2", page="activations")
    assert at.error and "hub reached" in at.error[0].value
    assert calls  # with consent the name does go to the hub loader


def test_figure_titles_name_the_model_not_the_folder(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="heads")
    _clean(at)
    titles = [chart["layout"]["title"]["text"] for chart in _charts(at)]
    assert f"Head census of {tiny_gpt2_dir.name}" in titles
    assert not any(str(tiny_gpt2_dir.parent) in t for t in titles)
    from interp.core import embedded
    from interp.core.model_info import display_name

    assert display_name(str(embedded.CHECKPOINTS / "ref-gpt2")) == "ref-gpt2"
    assert display_name("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"


def test_cpu_offers_only_dtypes_the_library_runs_there(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="activations")
    assert at.selectbox(key="device").value == "cpu"
    assert list(at.selectbox(key="dtype").options) == ["float32", "bfloat16"]
    at.selectbox(key="dtype").set_value("bfloat16").run()
    _clean(at)
    assert _charts(at)


def test_cache_ttl_comes_from_the_environment(monkeypatch):
    import app_shell

    monkeypatch.setenv("INTERP_DASHBOARD_CACHE_TTL", "abc")
    with pytest.raises(ValueError, match="INTERP_DASHBOARD_CACHE_TTL"):
        app_shell._cache_ttl()
    monkeypatch.setenv("INTERP_DASHBOARD_CACHE_TTL", "2.5")
    assert app_shell._cache_ttl() == 2.5


@pytest.mark.slow
@pytest.mark.parametrize("name", reference.names())
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_reference_models(name, page):
    try:
        reference.path(name)
    except FileNotFoundError as err:
        pytest.fail(f"reference checkpoint missing: {err}")
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.session_state["model_name"] = name
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    _clean(at)
    assert _charts(at)
