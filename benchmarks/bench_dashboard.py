"""The dashboard's responsiveness, measured with Streamlit's AppTest (the app's script runs as in a session).

Two figures, each reported as a ratio to its budget from the dashboard issue:

* ``dashboard_first_render``: the walkthrough page rendered from cold caches, model load included
  (``st.cache_resource`` and ``st.cache_data`` cleared before each run), against 10 s.
* ``dashboard_cached_slider``: moving the Activations browser's layer slider to a value whose
  result is already cached (the rerun of the whole script, figure serialisation included),
  against 300 ms.

Model: the embedded ``ref-gpt2`` when present, else a random GPT-2 of the same size.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.runner import Ratio

ENTRY = Path(__file__).resolve().parents[1] / "apps" / "dashboard.py"
FIRST_RENDER_BUDGET_S = 10.0
SLIDER_BUDGET_S = 0.3


def _model_path() -> str:
    import interp
    from interp.toy_models import ToyConfig, save_toy_checkpoint

    try:
        return str(interp.reference.path("ref-gpt2"))
    except FileNotFoundError:
        config = ToyConfig(arch="gpt2", n_layers=4, d_model=128, n_heads=4, n_ctx=64, vocab_size=3072)
        return str(save_toy_checkpoint(tempfile.mkdtemp(prefix="bench-dashboard-"), config))


def run() -> list[Ratio]:
    """Time the cold walkthrough render and a cached slider change."""
    import streamlit as st
    import torch
    from streamlit.testing.v1 import AppTest

    model = _model_path()
    first = []
    for _ in range(3):
        st.cache_resource.clear()
        st.cache_data.clear()
        at = AppTest.from_file(str(ENTRY), default_timeout=600)
        at.session_state["model_path"] = model
        start = time.perf_counter()
        at.run()
        first.append(time.perf_counter() - start)
        if at.exception or at.error or not at.get("plotly_chart"):
            raise RuntimeError(f"walkthrough did not render: {[e.value for e in (*at.exception, *at.error)]}")

    at.switch_page("pages/activations.py").run()
    slider = at.slider(key="act_layer")
    slider.set_value(1).run()  # fill the cache for both values
    slider = at.slider(key="act_layer")
    slider.set_value(0).run()
    changes = []
    for value in [1, 0] * 5:
        at.slider(key="act_layer").set_value(value)
        start = time.perf_counter()
        at.run()
        changes.append(time.perf_counter() - start)
        if at.exception or at.error:
            raise RuntimeError(f"activations page failed: {[e.value for e in (*at.exception, *at.error)]}")

    t_first, t_slider = statistics.median(first), statistics.median(changes)
    where = f"{Path(model).name}, {torch.get_num_threads()} threads"
    return [
        Ratio("dashboard_first_render", t_first / FIRST_RENDER_BUDGET_S, 1.0,
              f"walkthrough cold render {t_first:.2f} s (median of 3, model load included; runs "
              f"{', '.join(f'{t:.2f}' for t in first)} s, the first one also importing the pages) / budget "
              f"{FIRST_RENDER_BUDGET_S:g} s; {where}"),
        Ratio("dashboard_cached_slider", t_slider / SLIDER_BUDGET_S, 1.0,
              f"cached layer-slider rerun {1000 * t_slider:.0f} ms (median of {len(changes)}) / budget "
              f"{1000 * SLIDER_BUDGET_S:g} ms; {where}"),
    ]
