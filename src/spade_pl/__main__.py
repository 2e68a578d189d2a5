"""``python -m spade_pl [stage=...] [group=option ...]``: the Hydra entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from spade_pl.errors import SpadeInputError


def config_dir() -> str:
    """``conf/`` of a source checkout (editable install), else the copy packaged inside spade_pl."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"spade_pl cannot find its Hydra configs (looked beside {here})")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    from spade_pl.pipeline import run  # after Hydra has parsed the command line: fast --help

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Hydra's root handlers print + file them
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

    try:
        run(cfg)
    except SpadeInputError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
