"""The architecture matrix: every analysis on a tiny random-weight model of every family interp supports.

Each family of :data:`interp.core.toy_families.FAMILIES` is built once per session (seeded, saved in
Hugging Face layout, loaded through :func:`interp.load`), and each cell runs one analysis and checks a
number against an independent computation or an identity. A cell either passes, or is refused with a
``ValueError``/``NotImplementedError`` whose message names the architecture, or fails. Every outcome is
recorded in ``tests/artifacts/architectures.json`` (merged with earlier runs, so running a subset updates
only its cells; ``INTERP_ARCH_MATRIX`` names another file), which ``scripts/architecture_table.py`` turns
into the README's table. The dashboard cells are slow (``make test-all``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import pytest
import torch

import interp
import probes
from interp import rome
from interp.core.files import atomic_write_text
from interp.core.hooks import hook_name
from interp.core.toy_families import FAMILIES, family_config, save_family
from interp.heads.induction import repeated_random_tokens

MATRIX = Path(os.environ.get("INTERP_ARCH_MATRIX", Path(__file__).parent / "artifacts" / "architectures.json"))
PROMPT = "The cat sat on the mat and the dog sat on the log. The cat sat on the"
"""27 tokens with BOS: longer than the toy sliding windows (16), so local attention is exercised."""
FACT = "{} is located in the city of"
SUBJECT = "The Eiffel Tower"
GREEDY = {"max_new_tokens": 5, "temperature": 0, "stop_at_eos": False}
PARALLEL = {"gpt_neox", "gptj"}
"""Families whose attention and MLP read the same residual (``resid_post = resid_pre + attn + mlp``)."""
MOE = {"mixtral", "qwen2_moe", "qwen3_moe"}
PAGES = ["walkthrough", "activations", "attention", "heads", "logit_lens", "fact_editor", "sampling", "probing"]
APPS = Path(__file__).resolve().parents[1] / "apps"

class Zoo:
    """Each family's checkpoint and loaded model, built on first use and kept for the session."""

    def __init__(self, root: Path):
        self.root = root
        self.dirs: dict[str, Path] = {}
        self.models: dict[str, object] = {}

    def dir(self, family: str) -> Path:
        if family not in self.dirs:
            self.dirs[family] = save_family(family, self.root / family)
        return self.dirs[family]

    def model(self, family: str):
        if family not in self.models:
            self.models[family] = interp.load(self.dir(family), device="cpu")
        return self.models[family]

    @functools.cache  # noqa: B019 (the zoo lives for the session)
    def greedy(self, family: str):
        """Greedy KV-cached generation of :data:`GREEDY` tokens after :data:`PROMPT`."""
        return interp.generate(self.model(family), PROMPT, use_cache=True, **GREEDY)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="session")
def matrix():
    """Outcomes of this session's cells; merged into :data:`MATRIX` when the session ends."""
    outcomes: dict[str, dict[str, dict]] = {}
    yield outcomes
    if not outcomes:
        return
    try:
        old = json.loads(MATRIX.read_text())
    except (OSError, ValueError):
        old = {}
    merged = old.get("cells", {})
    for family, row in outcomes.items():
        merged.setdefault(family, {}).update(row)
    from importlib.metadata import version

    import transformers

    data = {
        "families": list(FAMILIES),
        "versions": {"transformer_lens": version("transformer-lens"), "transformers": transformers.__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "cells": {f: merged[f] for f in FAMILIES if f in merged},
    }
    MATRIX.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(MATRIX, json.dumps(data, indent=1, sort_keys=True) + "\n")


class Cell:
    """One (family, analysis) outcome: pass, refused (with the message), or fail (with the error)."""

    def __init__(self, family: str):
        self.family = family
        self.refusal: str | None = None

    @contextlib.contextmanager
    def refused(self, folder: Path):
        """Expect a refusal: a ValueError/NotImplementedError naming the architecture (not just the folder,
        which is named after it here)."""
        with pytest.raises((ValueError, NotImplementedError)) as err:
            yield
        message = str(err.value).replace(str(folder), "<checkpoint>")
        assert _arch_named(self.family, message), f"the refusal does not name the architecture: {message}"
        self.refusal = message.splitlines()[0]


def _arch_named(family: str, message: str) -> bool:
    names = {family, family.replace("_", "-"), family.replace("_", ""), family.split("_")[0]}
    return any(name.lower() in message.lower() for name in names)


@contextlib.contextmanager
def cell(matrix: dict, family: str, analysis: str):
    start = time.perf_counter()
    record = Cell(family)
    try:
        yield record
    except BaseException as err:
        if not isinstance(err, pytest.skip.Exception):
            message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            matrix.setdefault(family, {})[analysis] = {"status": "fail", "message": message[:300],
                                                        "seconds": round(time.perf_counter() - start, 3)}
        raise
    status = "refused" if record.refusal else "pass"
    matrix.setdefault(family, {})[analysis] = {"status": status, "message": record.refusal or "",
                                                "seconds": round(time.perf_counter() - start, 3)}


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> float:
    """Max absolute difference, asserted below ``atol``."""
    err = (a.float() - b.float()).abs().max().item()
    assert err <= atol, f"max difference {err:.3g} > {atol}"
    return err


@pytest.mark.parametrize("family", FAMILIES)
def test_load(family, zoo, matrix):
    with cell(matrix, family, "load"):
        model = zoo.model(family)
        info = interp.model_info(model)
        config = family_config(family)
        assert info.arch == config.model_type
        assert (info.n_layers, info.d_vocab) == (2, config.vocab_size)
        n_kv = getattr(config, "num_key_value_heads", None) or info.n_heads
        assert info.n_kv_heads == n_kv


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_hugging_face(family, zoo, matrix):
    from transformers import AutoModelForCausalLM

    with cell(matrix, family, "logits_vs_hf"):
        model = zoo.model(family)
        hf = AutoModelForCausalLM.from_pretrained(zoo.dir(family), attn_implementation="eager").eval()
        batch = interp.tokenize(model, [PROMPT, "Paris is the capital of France"])
        with torch.no_grad():
            ours = interp.capture(model, batch, names=[]).logits
            theirs = hf(batch.tokens, attention_mask=batch.attention_mask).logits
        real = batch.attention_mask.bool()
        close(ours[real], theirs[real], atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_every_alias(family, zoo, matrix):
    with cell(matrix, family, "capture_all"):
        model = zoo.model(family)
        info = interp.model_info(model)
        cap = interp.capture(model, PROMPT)
        missing = [n for n in interp.resolve_names(model, "all") if n not in cap]
        assert not missing, f"capture('all') kept no tensor for {missing}"
        for alias in ("rot_q", "rot_k", "resid_mid"):  # listed by some bridges, fired by fewer
            if any(hook_name(alias, layer) in model.hook_dict and hook_name(alias, layer) not in cap
                   for layer in range(info.n_layers)):
                with pytest.raises(ValueError, match=f"{info.arch}.*does not fire"):
                    interp.capture(model, PROMPT, names=[alias])
        for layer in range(info.n_layers - 1):
            close(cap.resid(layer, "post"), cap.resid(layer + 1, "pre"), atol=0)
        for layer in range(info.n_layers):
            close(cap.pattern(layer).sum(-1), torch.ones(1), atol=1e-5)
            if family in MOE:
                continue  # the MoE block's own output is checked by the journey's FFN stage
            post = cap.resid(layer, "post")
            if family in PARALLEL:
                rebuilt = cap.resid(layer, "pre") + cap[hook_name("attn_out", layer)] + cap[hook_name("mlp_out", layer)]
            else:
                rebuilt = cap.resid(layer, "mid") + cap[hook_name("mlp_out", layer)]
                close(cap.resid(layer, "mid"), cap.resid(layer, "pre") + cap[hook_name("attn_out", layer)], atol=1e-5)
            close(post, rebuilt, atol=1e-5)
        close(cap.logits, model(cap.tokens), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_head_census(family, zoo, matrix):
    with cell(matrix, family, "head_census"):
        model = zoo.model(family)
        tokens = interp.tokenize(model, PROMPT).tokens
        census = interp.head_census(model, tokens, importance=False, progress=False)
        patterns = torch.stack([interp.capture(model, tokens, names=["pattern"]).pattern(layer)[0]
                                for layer in range(2)]).float()  # [layer head q k]
        q = torch.arange(1, tokens.shape[1])
        close(census.score("previous_token"), patterns[:, :, q, q - 1].mean(-1), atol=1e-5)
        close(census.score("bos"), patterns[:, :, q, 0].mean(-1), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_induction_heads(family, zoo, matrix):
    with cell(matrix, family, "induction"):
        model = zoo.model(family)
        report = interp.find_induction_heads(model, seq_len=6, batch=2, ablate=False, progress=False)
        tokens = repeated_random_tokens(model, 6, 2, seed=0)
        patterns = torch.stack([interp.capture(model, tokens, names=["pattern"]).pattern(layer)
                                for layer in range(2)]).float()  # [layer batch head q k]
        off = tokens.shape[1] - 12
        q = torch.arange(off + 6, off + 12)
        expected = patterns[:, :, :, q, q - 5].mean((-1, 1))
        close(report.induction, expected, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_logit_lens_last_layer_is_the_output(family, zoo, matrix):
    with cell(matrix, family, "logit_lens"):
        model = zoo.model(family)
        lens = interp.logit_lens(model, PROMPT)
        logits = interp.capture(model, PROMPT, names=[]).logits
        close(lens.full_logprobs(layers=[-1])[0], logits.float().log_softmax(-1), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_tuned_lens(family, zoo, matrix):
    with cell(matrix, family, "tuned_lens"):
        model = zoo.model(family)
        trained = interp.TunedLens.train(model, [PROMPT], steps=1, progress=False)
        assert trained.weight.abs().sum() > 0  # one Adam step moved the translators
        # A zero translator is the logit lens at every layer, and every lens ends at the model's output.
        identity = interp.TunedLens(2, interp.model_info(model).d_model, meta=trained.meta)
        tuned = identity.apply(model, PROMPT, progress=False).full_logprobs()
        close(tuned, interp.logit_lens(model, PROMPT).full_logprobs(), atol=1e-4)
        logits = interp.capture(model, PROMPT, names=[]).logits
        close(tuned[-1], logits.float().log_softmax(-1), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_trace(family, zoo, matrix):
    with cell(matrix, family, "causal_trace"):
        model = zoo.model(family)
        trace = interp.causal_trace(model, FACT, SUBJECT, samples=1)
        # Restoring the last block's output at the last position restores the clean prediction exactly.
        assert trace.scores[-1, -1].item() == pytest.approx(trace.clean, abs=1e-5)
        clean = interp.capture(model, FACT.replace("{}", SUBJECT), names=[]).logits[0, -1].softmax(-1).max()
        assert trace.clean == pytest.approx(clean.item(), abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_rome_edit_and_undo(family, zoo, matrix):
    with cell(matrix, family, "rome") as c:
        model = zoo.model(family)
        before = {n: p.detach().clone() for n, p in model.original_model.named_parameters()}
        config = rome.RomeConfig(n_prefixes=1, prefix_tokens=3, steps=2, stats_samples=0)
        kwargs = {"prompt": FACT, "subject": SUBJECT, "target": " Rome", "layer": 0, "config": config}
        if family in MOE:
            with c.refused(zoo.dir(family)):
                rome.edit(model, **kwargs)
        else:
            edit = rome.edit(model, **kwargs)
            try:
                after = dict(model.original_model.named_parameters())
                changed = [n for n, p in after.items() if not torch.equal(p, before[n])]
                assert len(changed) == 1, f"the edit changed {changed}"
                delta = after[changed[0]].detach() - before[changed[0]]
                expected = edit.delta()
                close(delta, expected if delta.shape == expected.shape else expected.T, atol=1e-5)
            finally:
                edit.undo()
        for n, p in model.original_model.named_parameters():
            assert torch.equal(p, before[n]), f"{n} differs after undo"


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_cache_equals_no_cache(family, zoo, matrix):
    with cell(matrix, family, "generation_kv_cache"):
        model = zoo.model(family)
        cached = zoo.greedy(family)
        fresh = interp.generate(model, PROMPT, use_cache=False, **GREEDY)
        assert cached.new_tokens.tolist() == fresh.new_tokens.tolist()
        close(torch.tensor(cached.token_probs), torch.tensor(fresh.token_probs), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_speculative_decoding(family, zoo, matrix):
    with cell(matrix, family, "speculative"):
        model = zoo.model(family)
        spec = interp.speculative_generate(model, model, PROMPT, n_draft=3, **GREEDY)
        assert spec.new_tokens.tolist() == zoo.greedy(family).new_tokens.tolist()
        # The model drafts for itself, so every drafted token is accepted.
        assert [r.accepted for r in spec.rounds] == [len(r.drafted) for r in spec.rounds]


@pytest.mark.parametrize("family", FAMILIES)
def test_journey_all_nine_stages(family, zoo, matrix):
    with cell(matrix, family, "journey"):
        model = zoo.model(family)
        info = interp.model_info(model)
        for layer in range(info.n_layers):
            journey = interp.journey.run(model, PROMPT, layer=layer, head=info.n_heads - 1, k=5)
            cap = interp.capture(model, PROMPT, names=["pattern"])
            close(journey.attention.pattern, cap.pattern(layer)[0, -1], atol=1e-5)
            close(journey.heads.patterns, cap.pattern(layer)[0], atol=0)
        res = journey.residual
        assert res.attributions.sum().item() + res.bias_terms == pytest.approx(res.logit, abs=1e-3)
        capped = res.softcap * math.tanh(res.logit / res.softcap) if res.softcap else res.logit  # Gemma 2
        assert capped == pytest.approx(cap.logits[0, res.position, res.token_id].item(), abs=1e-4)
        close(journey.output.probs_by_step[next(iter(journey.output.probs_by_step))],
              cap.logits[0, -1].float().softmax(-1), atol=1e-5)
        assert journey.tokens is not None and journey.embeddings is not None and journey.positions is not None
        assert journey.ffn is not None and journey.architecture is not None


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_accuracy_matches_its_weights(family, zoo, matrix):
    with cell(matrix, family, "probes"):
        model = zoo.model(family)
        starts = ["The", "One", "When", "Paris", "Rome", "Mary", "John", "Then"]
        task = probes.ProbeTask.from_examples(
            [(f"{s} {noun}", -1, noun) for s in starts for noun in ("cat", "dog")], name="noun")
        report = probes.fit(model, task, layers=[0], control=False)
        test = [ex for ex in task.examples if (ex.group or ex.text) in report.test_groups]
        cap = interp.capture(model, [ex.text for ex in test], names=["resid_post"])
        resid = cap.resid(0, "post")[torch.arange(len(test)), cap.last_positions].float()
        predicted = (resid @ report.weight[0].float() + report.bias[0].float()).argmax(-1)
        truth = torch.tensor([report.labels.index(str(ex.label)) for ex in test])
        assert report.accuracy[0] == pytest.approx((predicted == truth).float().mean().item(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_dashboard_page(family, zoo, matrix, tmp_path_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_DASHBOARD_ROOTS", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("INTERP_DASHBOARD_HUB", raising=False)
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    at = AppTest.from_file(str(APPS / "dashboard.py"), default_timeout=600)
    at.session_state["model_path"] = str(zoo.dir(family))
    at.run()
    failed = []
    for page in PAGES:
        try:
            with cell(matrix, family, f"dashboard:{page}"):
                at.switch_page(f"app_pages/{page}.py").run()
                problems = [e.value for e in at.exception] + [e.value for e in at.error]
                assert not problems, f"{page}: {problems[0]}"
                assert at.get("plotly_chart"), f"{page} drew no figure"
        except AssertionError as err:
            failed.append(str(err))
    assert not failed, f"pages with errors on {family}: {failed}"


def test_table_script_marks_and_replaces_only_the_marked_block(tmp_path):
    import importlib.util

    path = APPS.parent / "scripts" / "architecture_table.py"
    spec = importlib.util.spec_from_file_location("architecture_table", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = {"families": ["gpt2", "mixtral"], "cells": {
        "gpt2": {"load": {"status": "pass", "message": ""}, "dashboard:heads": {"status": "fail", "message": "x"}},
        "mixtral": {"rome": {"status": "refused", "message": "ROME cannot edit mixtral: routed experts"}}}}
    rows = script.table(data).splitlines()
    gpt2 = [c.strip() for c in rows[2].split("|")[1:-1]]
    mixtral = [c.strip() for c in rows[3].split("|")[1:-1]]
    columns = list(script.COLUMNS)
    assert gpt2[1 + columns.index("load")] == "✓" and gpt2[1 + columns.index("dashboard")] == "✗"
    assert gpt2[1 + columns.index("rome")] == "·"
    assert mixtral[1 + columns.index("rome")] == "refused (routed experts)"
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{script.START}\nold table\n{script.END}\noutro\n")
    assert script.main(["--matrix", str(_write(tmp_path / "m.json", data)), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{script.END}\noutro\n") and "old table" not in text
    assert "| GPT-2 (`gpt2`) |" in text
    with pytest.raises(ValueError, match="expected one"):
        script.replace_block("no markers here", "table")


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path
