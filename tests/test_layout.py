"""The package layout of docs/architecture.md, pinned: public names, layers' hygiene, no cycles, small modules.

The import layers themselves are checked by ``lint-imports`` (contract in ``pyproject.toml``), which
``make test`` runs before pytest. These tests pin what that contract does not see.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import grimp
import networkx as nx
import pytest
import typer

import interp
import probes

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [ROOT / "interp", ROOT / "probes"]
MAX_LINES = 420
"""Modules stay near ~400 lines (docs/architecture.md); this is the hard ceiling."""

INTERP_ALL = [
    "ACTIVATION_SITES", "ALIASES", "ActivationView", "AttentionView", "Capture", "Generation", "HeadCensus",
    "HeadKnockout", "InductionReport", "LensResult", "ModelInfo", "NextToken", "NotCapturedError", "PositionSummary",
    "SpeculativeGeneration", "Tokenized", "TraceResult", "TunedLens", "activation_view", "analogy", "attention_view",
    "capture", "causal_trace", "check_checkpoint_dir", "check_head", "check_layer", "expand_kv_heads",
    "find_induction_heads", "generate", "head_census", "journey", "knock_out_head", "load", "logit_lens", "model_info",
    "next_token", "reference", "resolve_names", "rome", "speculative_generate", "str_tokens", "to_single_token",
    "tokenize",
]
REFERENCE_ALL = ["load_world", "names", "path"]
CIRCUITS_ALL = ["METHODS", "TASKS", "Circuit", "CircuitTask", "EdgeGraph", "Faithfulness", "circuit_faithfulness",
                "find_circuit", "make_task",
                "pairs_task", "task_patching"]
INTERP_CIRCUITS = ["Circuit", "find_circuit"]
PATCHING_ALL = [
    "METRICS", "SITES", "ActivationPatching", "PathPatching", "activation_patching", "all_senders", "parse_receiver",
    "parse_sender", "path_patching",
]
INTERP_PATCHING = ["ActivationPatching", "PathPatching", "activation_patching", "patching", "path_patching"]
STORE_ALL = ["ActivationStore", "LogitEffect", "TopExamples", "build", "logit_effect", "open", "top_examples",
             "unit_activations"]
PROBES_ALL = [
    "LogisticConfig", "LogisticFit", "Probe", "ProbeConfig", "ProbeExample", "ProbeReport", "ProbeTask", "SITES",
    "Split", "Steering", "SteeringEffect", "TASKS", "TaskActivations", "collect", "control_labels", "fit",
    "fit_activations", "fit_logistic", "load_world", "split_by_group", "steer", "steering_effect", "world_task",
]
JOURNEY_ALL = [
    "AnalogyScore", "Architecture", "ArchitectureFacts", "AttentionHead", "AttentionHeads", "ExpertRouting", "Journey",
    "LearnedPositions", "Neighbours", "PUBLIC_MODELS", "ResidualStream", "RotaryPositions", "TokenStage", "TopNeurons",
    "WordMerges", "analogy", "analogy_accuracy", "architecture", "attention_head", "attention_heads", "expert_outputs",
    "expert_routing", "feed_forward", "nearest_tokens", "positions", "residual_stream", "run", "token_merges",
]
ROME_NAMES = [
    "Edit", "EditCase", "EditEvalResult", "KEY_CONTEXTS", "KL_PROMPT", "RomeConfig", "check_request", "choose_layer",
    "edit", "edited", "evaluate", "fingerprint", "key_stats", "layer_profile", "load_edit", "make_cases", "prefixes",
    "projection", "solve_stats", "stats_path",
]
CLI_COMMANDS = [
    "analogy", "capture", "circuit", "edit", "edit-eval", "features", "generate", "heads", "induction", "lens",
    "models", "next-token", "probe", "speculative", "trace", "world",
]
PAGES = [
    "activations", "attention", "circuits", "fact_editor", "features", "heads", "logit_lens", "probing", "sampling",
    "walkthrough",
]


def _modules() -> list[Path]:
    return sorted(p for folder in LIBRARY for p in folder.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize(("package", "expected"), [(interp, INTERP_ALL), (interp.reference, REFERENCE_ALL),
                                                    (probes, PROBES_ALL), (interp.journey, JOURNEY_ALL),
                                                    (interp.patching, PATCHING_ALL), (interp, INTERP_PATCHING),
                                                    (interp.store, STORE_ALL), (interp.circuits, CIRCUITS_ALL),
                                                    (interp, INTERP_CIRCUITS)])
def test_public_names_are_pinned(package, expected):
    """Every public name of the front doors is still there (more may be added, none removed)."""
    missing = sorted(set(expected) - set(package.__all__))
    assert not missing, f"{package.__name__}.__all__ lost {missing}"
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_rome_journey_cli_and_pages_are_pinned():
    """The names users' scripts call beyond ``__all__``: ROME, the journey, the CLI and the page URLs."""
    for name in ROME_NAMES:
        assert hasattr(interp.rome, name), f"interp.rome.{name} is gone"
    for name in ("edit", "edited", "load_edit"):
        assert callable(getattr(interp.rome, name)) and not isinstance(getattr(interp.rome, name), type(interp))
    assert callable(interp.rome.Edit.undo)
    assert callable(interp.journey.run) and not isinstance(interp.journey.run, type(interp))
    app = importlib.import_module("interp.cli").app
    command = typer.main.get_command(app)
    assert sorted(command.commands) == CLI_COMMANDS
    assert sorted(command.commands["world"].commands) == ["card", "eval", "train"]
    assert sorted(p.stem for p in (ROOT / "apps" / "app_pages").glob("*.py")) == PAGES


def test_no_import_cycles():
    """No module reaches itself through imports, inside a package or across packages."""
    graph = grimp.build_graph("interp", "probes")
    edges = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    cycles = [c for c in nx.simple_cycles(edges) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_modules_are_small():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_init_files_only_reexport():
    """``__init__.py``: a docstring, imports and a sorted ``__all__``; nothing that runs on import."""
    for path in (p for p in _modules() if p.name == "__init__.py"):
        tree = ast.parse(path.read_text())
        body = tree.body[1:] if ast.get_docstring(tree) else tree.body
        names = None
        for node in body:
            if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]:
                names = ast.literal_eval(node.value)
            else:
                assert isinstance(node, ast.ImportFrom | ast.Import), (
                    f"{_name(path)} line {node.lineno} is not an import"
                )
        assert names is not None and names == sorted(names), f"{_name(path)} needs a sorted __all__"


def test_no_private_names_imported_across_modules():
    bad = [f"{_name(p)}:{node.lineno} imports {alias.name} from {node.module}"
           for p in _modules() for node in ast.walk(ast.parse(p.read_text()))
           if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("interp", "probes")
           for alias in node.names if alias.name.startswith("_")]
    assert not bad, bad


def _code_strings(tree: ast.AST) -> list[ast.AST]:
    """String literals and f-strings that are not docstrings."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append(node)
        elif isinstance(node, ast.JoinedStr):
            out.append(node)
    return out


def test_hook_names_are_spelled_only_in_core_hooks():
    """Outside ``interp/core/hooks.py`` no code writes a ``blocks.…`` or ``hook_…`` name by hand."""
    bad = []
    for path in _modules():
        if path == ROOT / "interp" / "core" / "hooks.py":
            continue
        for node in _code_strings(ast.parse(path.read_text())):
            parts = [node] if isinstance(node, ast.Constant) else node.values
            text = "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in parts)
            if text.startswith(("blocks.", "hook_", "ln_final.hook")):
                bad.append(f"{_name(path)}:{node.lineno} {text!r}")
    assert not bad, bad


def test_hooks_are_attached_only_by_the_hook_layer():
    """Analyses attach hooks through ``interp.core.hooks.hooked`` or ``interp.capture``, never by hand."""
    direct = ("hooks", "run_with_hooks", "add_hook", "run_with_cache", "reset_hooks", "register_forward_hook")
    bad = [f"{_name(p)}:{node.lineno} .{node.func.attr}(...)"
           for p in _modules() if ROOT / "interp" / "core" not in p.parents
           for node in ast.walk(ast.parse(p.read_text()))
           if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in direct]
    assert not bad, bad
