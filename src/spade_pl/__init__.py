"""spade-pl: SPADE structured pruning + fine-tuning of MBDL reconstruction networks."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `paths.root_dir` falls back to the working directory through this resolver, not `${hydra:runtime.cwd}`:
# a multirun resolves `hydra.sweep.dir` (which depends on it) before any job, when HydraConfig is not set.
OmegaConf.register_new_resolver("spade_pl.cwd", os.getcwd, replace=True)
