"""The machine a table was measured on, recorded beside its rows (``Table.to_json``)."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from l2o.rules.kernels import cpuinfo


def cpu_name() -> str:
    """``model name (family F, model M)`` from ``/proc/cpuinfo`` on Linux (a VM may report only
    the vendor's brand there, so the family and model numbers name the core), else
    ``platform.processor()``; ``""`` where neither says."""
    fields = cpuinfo()
    name = fields.get("model name", platform.processor())
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def describe() -> dict[str, Any]:
    """``cpu`` (:func:`cpu_name`), ``logical_cpus``, ``torch`` (its version), ``threads`` (torch's
    intra-op threads) and, where CUDA is available, ``gpu`` (device 0's name)."""
    machine: dict[str, Any] = {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
                               "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def summary(machine: dict[str, Any] | None) -> str:
    """One sentence naming ``machine`` (a :func:`describe` dict), or saying it was not recorded."""
    if not machine:
        return "Machine not recorded (an output written before l2o recorded it)."
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    return (f"Measured on {machine['cpu']}, {machine['threads']} torch threads of {machine['logical_cpus']} "
            f"logical CPUs{gpu}, torch {machine['torch']}.")
