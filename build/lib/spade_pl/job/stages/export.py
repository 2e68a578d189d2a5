"""``stage=export``: everything a dense or pruned network is handed back as, in ``<run>/export/``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.timing import set_layout
from spade_pl.core.atomic_io import atomic_write_json
from spade_pl.core.errors import SpadeInputError, require
from spade_pl.data.splits import SplitDataModule
from spade_pl.job.context import JobContext
from spade_pl.models.base import MBDLNetwork
from spade_pl.weights.export import write_library_format, write_state_dict
from spade_pl.weights.torchscript import export_network

log = logging.getLogger(__name__)


def write_export(
    network: MBDLNetwork,
    structure: dict[str, Any] | None,
    network_config: DictConfig,
    datamodule: SplitDataModule,
    benchmark: BenchmarkSettings,
    output_dir: Path,
) -> dict[str, Any]:
    """Write ``export/``: the weights with their pruning history (``state_dict.pt``), the network in its own
    library's format where it has one, and a TorchScript trace (first test slice, checked on the second);
    one line per file, or why it was not written, and ``export.json`` with all of it."""
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
    try:
        record["torchscript"] = trace(network, datamodule, benchmark, folder)
        traced = record["torchscript"]
        lines.append(
            f"wrote {traced['artifact']} (TorchScript, {traced['parameters']:,} parameters; max |artifact - "
            f"checkpoint| {traced['max_abs_error']['example']:.1e} on the example, "
            f"{traced['max_abs_error']['check']:.1e} on a second slice); inputs: "
            + ", ".join(f"{k} {v['shape']}" for k, v in traced["inputs"].items())
        )
    except SpadeInputError as err:
        record["torchscript"] = {"not_written": str(err)}
        lines.append(f"not written, TorchScript: {err}")
    atomic_write_json(folder / "export.json", record)
    print("\n" + "\n".join(lines), flush=True)
    return record


def trace(
    network: MBDLNetwork, datamodule: SplitDataModule, benchmark: BenchmarkSettings, folder: Path
) -> dict[str, Any]:
    """The TorchScript export: traced on the first test slice, checked on the second (same acquisition), in
    the priors' memory layout the benchmark would choose."""
    slices = iter(datamodule.test_dataloader())
    example = next(slices)
    check = next(slices, example)
    layout = set_layout(network, example.y, example.physics(), benchmark)
    log.info(
        "[export] tracing %s on %s slice %d, priors %s",
        type(network).__name__,
        example.fname[0],
        example.slice_num[0],
        layout["chosen"],
    )
    return export_network(network, (example.y, example.physics()), (check.y, check.physics()), folder, layout)


def stage_export(ctx: JobContext) -> dict[str, Any]:
    """``stage=export``: write ``ckpt_path`` as weights + pruning history, its library's format and TorchScript."""
    require(ctx.cfg.ckpt_path is not None, "stage=export needs ckpt_path=/path/to/model.ckpt (dense or pruned)")
    if not ctx.writer:
        return {}
    network, structure = ctx.networks.load(ctx.cfg.ckpt_path)
    settings = BenchmarkSettings(**ctx.cfg.benchmark)
    return write_export(network, structure, ctx.cfg.network.model, ctx.datamodule, settings, ctx.output_dir)
