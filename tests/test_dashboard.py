"""AppTest tests of the Streamlit dashboard (apps/dashboard.py): every page, its widgets, bad input, edit isolation.

The tiny fixture models are loaded through the sidebar's own-model field (the real loading path);
the reference checkpoints are exercised in the slow test at the end.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from interp import reference

APPS = Path(__file__).resolve().parents[1] / "apps"
ENTRY = APPS / "dashboard.py"
PAGES = ["walkthrough", "activations", "attention", "heads", "logit_lens", "fact_editor", "sampling", "probing"]
TIMEOUT = 600  # seconds per script run: pages fit probes or trace facts, and CI machines are slow


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

    return app_shell.load_model(str(model_dir), "cpu", "float32")


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
    assert at.error and "does not exist" in at.error[0].value
    at = _app(tiny_gpt2_dir, page="logit_lens")
    at.text_input(key="lens_target").input(" the cat sat").run()
    assert not at.exception
    assert at.error and "one token" in at.error[0].value


def test_fact_editor_subject_must_be_in_prompt(tiny_gpt2_dir):
    at = _app(tiny_gpt2_dir, page="fact_editor")
    at.text_input(key="fe_subject").input("the Colosseum").run()
    assert not at.exception
    assert at.error and "does not occur in the prompt" in at.error[0].value


def test_fact_edit_is_per_session_and_undo_is_bit_exact(tiny_gpt2_dir):
    shared = _shared_model(tiny_gpt2_dir)
    snapshot = {k: v.clone() for k, v in shared.state_dict().items()}

    alice = _app(tiny_gpt2_dir, page="fact_editor")
    _clean(alice)
    before = alice.dataframe[0].value
    alice.button(key="fe_apply").click().run()
    _clean(alice)
    edited = alice.dataframe[0].value
    assert "p after" in edited.columns
    # Whether ROME succeeds on a random tiny model is the ROME tests' business; here: the edit took effect.
    assert edited["p after"].tolist() != edited["p before"].tolist()
    copy = alice.session_state["fact_edit"]["model"]
    assert copy is not shared
    assert not all(torch.equal(copy.state_dict()[k], v) for k, v in snapshot.items())

    bob = _app(tiny_gpt2_dir, page="fact_editor")
    _clean(bob)
    assert "p after" not in bob.dataframe[0].value.columns
    assert bob.dataframe[0].value["p before"].tolist() == before["p before"].tolist()
    assert all(torch.equal(shared.state_dict()[k], v) for k, v in snapshot.items())

    alice.button(key="fe_undo").click().run()
    _clean(alice)
    assert "fact_edit" not in alice.session_state
    assert all(torch.equal(copy.state_dict()[k], v) for k, v in snapshot.items())  # undo restored the copy bit-exact
    assert all(torch.equal(shared.state_dict()[k], v) for k, v in snapshot.items())


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
