"""``python -m spade_pl [stage=...] [group=option ...]``: the Hydra entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from spade_pl.errors import SpadeInputError

log = logging.getLogger("spade_pl")


def config_dir() -> str:
    """``conf/`` of a source checkout (editable install), else the copy packaged inside spade_pl."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"spade_pl cannot find its Hydra configs (looked beside {here})")


def optimized_value(cfg: DictConfig, results: dict) -> float | None:
    """The value a sweeper (Optuna) optimises: ``optimized_metric`` of the last training stage's selection."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    value = results.get("validation", {}).get(name)
    if value is None:
        raise SpadeInputError(
            f"optimized_metric={name!r} was not measured by this job; allowed: {sorted(results.get('validation', {}))}"
        )
    return float(value)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one job. Bad input is one line: exit 2 for a single run; in a sweep, the job fails and the others run."""
    from spade_pl.pipeline import run  # after Hydra has parsed the command line: fast --help

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Hydra's root handlers print + file them
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

    try:
        return optimized_value(cfg, run(cfg))
    except SpadeInputError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("error: %s", err)  # into the job's own log file
            raise  # Hydra marks this job failed and reports it after the sweep's other jobs have run
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
