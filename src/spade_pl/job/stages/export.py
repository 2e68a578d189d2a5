"""``stage=export``: everything a dense or pruned network is handed back as, in ``<run>/export/``: its weights, its
own library's format and the runnable formats of ``export.formats`` (:mod:`spade_pl.weights.artifacts`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.timing import set_layout
from spade_pl.core.atomic_io import atomic_write_json
from spade_pl.core.errors import SpadeInputError, require
from spade_pl.data.splits import SplitDataModule
from spade_pl.job.context import JobContext
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import Physics
from spade_pl.weights.artifacts import ArtifactFormat, export_artifact
from spade_pl.weights.export import write_library_format, write_state_dict
from spade_pl.weights.formats import chosen_formats

log = logging.getLogger(__name__)


def write_export(
    network: MBDLNetwork,
    structure: dict[str, Any] | None,
    network_config: DictConfig,
    datamodule: SplitDataModule,
    benchmark: BenchmarkSettings,
    output_dir: Path,
    formats: list[ArtifactFormat],
) -> dict[str, Any]:
    """Write ``export/``: the weights with their pruning history (``state_dict.pt``), the network in its own
    library's format where it has one, and the network (a DEQ: its priors) in each of ``formats``, captured on the
    first test slice and checked on the second; one line per file, or why it was not written, and ``export.json``
    with all of it."""
    folder = output_dir / "export"
    folder.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(network_config, resolve=True)
    record: dict[str, Any] = {"state_dict": write_state_dict(network, structure, config, folder)}
    lines = [f"wrote {record['state_dict']['file']} (weights and pruning history; docs: Export)"]
    library = write_library_format(network, folder)
    if library is not None:
        record["library_format"] = library
        if "file" in library:
            arguments = ", ".join(f"{k}={v}" for k, v in library["arguments"].items())
            lines.append(f"wrote {library['file']}: a plain state_dict of {library['constructor']}({arguments})")
        else:
            lines.append(f"not written, the network's own library format: {library['not_written']}")
    if formats:
        example, check, layout = examples(network, datamodule, benchmark)
    for form in formats:
        try:
            record[form.name] = export_artifact(network, form, example, check, folder, layout)
        except SpadeInputError as err:
            record[form.name] = {"not_written": str(err)}
            lines.append(f"not written, {form.title}: {err}")
            continue
        for artifact in record[form.name]["artifacts"].values():
            lines.append(
                f"wrote {artifact['artifact']} ({form.title}, {artifact['parameters']:,} parameters; max |artifact - "
                f"checkpoint| {artifact['max_abs_error']['example']:.1e} on the example, "
                f"{artifact['max_abs_error']['check']:.1e} on a second slice); inputs: "
                + ", ".join(f"{k} {v['shape']}" for k, v in artifact["inputs"].items())
            )
        if "not_captured" in record[form.name]:
            lines.append(f"not captured in {form.title}: {record[form.name]['not_captured']}")
    atomic_write_json(folder / "export.json", record)
    print("\n" + "\n".join(lines), flush=True)
    return record


def examples(
    network: MBDLNetwork, datamodule: SplitDataModule, benchmark: BenchmarkSettings
) -> tuple[tuple[Tensor, Physics], tuple[Tensor, Physics], dict[str, Any]]:
    """The first test slice (what is captured) and the second (what it is checked on too, same acquisition), with
    the network's priors put in the memory layout the benchmark would choose (the capture keeps it)."""
    slices = iter(datamodule.test_dataloader())
    example = next(slices)
    check = next(slices, example)
    layout = set_layout(network, example.y, example.physics(), benchmark)
    log.info(
        "[export] capturing %s on %s slice %d, priors %s",
        type(network).__name__,
        example.fname[0],
        example.slice_num[0],
        layout["chosen"],
    )
    return (example.y, example.physics()), (check.y, check.physics()), layout


def stage_export(ctx: JobContext) -> dict[str, Any]:
    """``stage=export``: write ``ckpt_path`` as weights + pruning history, its library's format and each of
    ``export.formats``."""
    require(ctx.cfg.ckpt_path is not None, "stage=export needs ckpt_path=/path/to/model.ckpt (dense or pruned)")
    formats = chosen_formats(list(ctx.cfg.export.formats))
    if not ctx.writer:
        return {}
    network, structure = ctx.networks.load(ctx.cfg.ckpt_path)
    settings = BenchmarkSettings(**ctx.cfg.benchmark)
    return write_export(network, structure, ctx.cfg.network.model, ctx.datamodule, settings, ctx.output_dir, formats)
