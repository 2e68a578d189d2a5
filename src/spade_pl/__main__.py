"""``python -m spade_pl [stage=...] [group=option ...]``: the Hydra entry point."""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from spade_pl.core.errors import RunFailure, SpadeInputError, message_of, print_error

log = logging.getLogger("spade_pl")
#: fastmri's metadata asks for torchvision, which spade-pl never uses (and which breaks a CPU torch): pip does not
#: install it with spade-pl, so a missing one is said in one line with the command that installs it
FASTMRI_MISSING = (
    "fastmri is not installed; install it without its torchvision requirement: pip install --no-deps fastmri==0.3.0"
)
#: a write failing for these reasons is the machine's state, not a bug: one line, exit 2
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


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
    """Run one job. Bad input is one line and exit 2; a run failure one line, exit 1 and its traceback in the job's
    log file. In a sweep the job fails and the others run."""
    from spade_pl.job.pipeline import run  # after Hydra has parsed the command line: fast --help

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Hydra's root handlers print + file them
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

    try:
        return optimized_value(cfg, run(cfg))
    except RunFailure as err:
        logs = traceback_to_log_files(err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        where = f" (traceback in {', '.join(logs)})" if logs else ""
        print_error(f"the run failed: {one_line(err)}{where}")
        sys.exit(1)
    except (SpadeInputError, OSError) as err:
        if isinstance(err, OSError) and err.errno not in FULL_OR_READ_ONLY:
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("error: %s", one_line(err))  # into the job's own log file
            raise  # Hydra marks this job failed and reports it after the sweep's other jobs have run
        print_error(one_line(err))
        sys.exit(2)


def traceback_to_log_files(err: BaseException) -> list[str]:
    """Write ``err`` with its traceback to the job's log files only (Hydra's file handlers; the screen gets one
    line); returns their paths."""
    record = logging.LogRecord("spade_pl", logging.ERROR, __file__, 0, "the run failed: %s", (one_line(err),), None)
    record.exc_info = (type(err), err, err.__traceback__)
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        handler.handle(record)
    return [h.baseFilename for h in files]


def one_line(err: BaseException) -> str:
    if isinstance(err, OSError):
        where = err.filename or "an output file"
        return f"cannot access {where}: {err.strerror} (full disk, read-only folder or no permission); stopped there"
    return message_of(err)


def command_line_problem(overrides: list[str]) -> str | None:
    """Compose the config the way Hydra will (unknown keys and options, bad override syntax, an output folder
    that cannot be written) and say in one line what is wrong; None when it composes."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
    except MissingConfigException as err:
        options = f"; allowed: {', '.join(err.options)}" if err.options else ""
        first = str(err).strip().splitlines()[0].replace("In 'config': ", "")
        return f"{first}{options}"
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        return " ".join(str(err).split())
    run_dir = Path(str(cfg.hydra.run.dir))
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    try:  # what Hydra is about to do there: make a folder (then gone again; Hydra makes the real one)
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".spade-pl-check-"))
    except OSError as err:
        return f"output folder {run_dir} cannot be created in {existing} ({err.strerror}); choose hydra.run.dir=..."
    return None


def cli() -> None:
    """``python -m spade_pl`` / ``spade-pl``: bad command lines are one line and exit 2, then Hydra runs.

    Hydra's own messages for unknown keys or options span several lines plus a hint and exit 1; a single run's
    command line is therefore composed once up front. Flags (``-m``, ``--cfg``, ``--help``, ...) go straight
    to Hydra (in a sweep, a bad job fails on its own and the others run)."""
    if importlib.util.find_spec("fastmri") is None:
        print_error(FASTMRI_MISSING)
        sys.exit(2)
    overrides = sys.argv[1:]
    if not any(arg.startswith("-") for arg in overrides):
        problem = command_line_problem(overrides)
        if problem is not None:
            print_error(problem)
            sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
