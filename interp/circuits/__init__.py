"""Circuits: edge attribution patching (EAP, EAP-IG), exact edge patching, and :func:`find_circuit`."""

from interp.circuits.circuit import METHODS, Circuit, Faithfulness, circuit_faithfulness, find_circuit
from interp.circuits.graph import EdgeGraph
from interp.circuits.heatmaps import task_patching
from interp.circuits.tasks import TASKS, CircuitTask, make_task, pairs_task

__all__ = [
    "Circuit",
    "CircuitTask",
    "EdgeGraph",
    "Faithfulness",
    "METHODS",
    "TASKS",
    "circuit_faithfulness",
    "find_circuit",
    "make_task",
    "pairs_task",
    "task_patching",
]
