"""spade-pl: SPADE structured pruning + fine-tuning of MBDL reconstruction networks.

The names a notebook needs are importable from here (``from spade_pl import prune_network``): the contracts a
network, physics or sample keeps, the shipped networks, pruning and its replay, the objectives, the Lightning
module and a synthetic batch. They load on first use, so the command line starts without importing torch.
"""

import importlib
import os
from typing import Any

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `paths.root_dir` falls back to the working directory through this resolver, not `${hydra:runtime.cwd}`:
# a multirun resolves `hydra.sweep.dir` (which depends on it) before any job, when HydraConfig is not set.
OmegaConf.register_new_resolver("spade_pl.cwd", os.getcwd, replace=True)

#: public name -> the module that defines it
_PUBLIC = {
    # contracts
    "MBDLNetwork": "spade_pl.models.base",
    "Physics": "spade_pl.physics.base",
    "DataTerm": "spade_pl.physics.base",
    "Sample": "spade_pl.physics.sample",
    # problems and networks
    "MultiCoilMRI": "spade_pl.physics.mri",
    "Downsampling": "spade_pl.physics.sr",
    "E2EVarNet": "spade_pl.models.varnet.e2e",
    "VarNetGivenMaps": "spade_pl.models.varnet.given_maps",
    "DEQ": "spade_pl.models.deq",
    "UnrolledHQS": "spade_pl.models.unrolled",
    "synthetic_mri_batch": "spade_pl.data.mri.datamodule",
    # pruning
    "PruneSettings": "spade_pl.pruning.settings",
    "PruningResult": "spade_pl.pruning.prune",
    "prune_network": "spade_pl.pruning.prune",
    "replay_structure": "spade_pl.pruning.prune",
    "count_params": "spade_pl.pruning.counting",
    # fine-tuning
    "Objective": "spade_pl.objectives.base",
    "Supervised": "spade_pl.objectives.supervised",
    "Distill": "spade_pl.objectives.distill",
    "SelfSupervised": "spade_pl.objectives.selfsup",
    "Sum": "spade_pl.objectives.terms",
    "ReconModule": "spade_pl.training.lightning_module",
    # measuring
    "BenchmarkSettings": "spade_pl.benchmark.settings",
    "benchmark_pair": "spade_pl.benchmark.timing",
    # errors
    "SpadeInputError": "spade_pl.core.errors",
    "RunFailure": "spade_pl.core.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'spade_pl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
