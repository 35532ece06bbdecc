"""probes: linear probes on every layer of a model, with control tasks, and steering along probe directions.

Build a :class:`ProbeTask` (or name a reference-world task), :func:`fit` it to get a
:class:`ProbeReport`, and :func:`steer` along a probe's class direction.
"""

from probes.activations import SITES, TaskActivations, collect
from probes.logistic import LogisticConfig, LogisticFit, fit_logistic
from probes.report import Probe, ProbeConfig, ProbeReport, fit, fit_activations
from probes.steering import Steering, SteeringEffect, steer, steering_effect
from probes.task import ProbeExample, ProbeTask, Split, control_labels, split_by_group
from probes.world_tasks import TASKS, load_world, world_task

__all__ = [
    "LogisticConfig",
    "LogisticFit",
    "Probe",
    "ProbeConfig",
    "ProbeExample",
    "ProbeReport",
    "ProbeTask",
    "SITES",
    "Split",
    "Steering",
    "SteeringEffect",
    "TASKS",
    "TaskActivations",
    "collect",
    "control_labels",
    "fit",
    "fit_activations",
    "fit_logistic",
    "load_world",
    "split_by_group",
    "steer",
    "steering_effect",
    "world_task",
]
