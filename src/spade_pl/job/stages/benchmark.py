"""The benchmark as a job runs it (``stage=benchmark`` and the main job's last step): on the data's first test
slice (or a synthetic one) and, where the data has
volumes, on a whole test volume; written to ``benchmark.json`` / ``benchmark.md`` and printed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spade_pl.benchmark.inputs import whole_volumes
from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.table import benchmark_markdown
from spade_pl.benchmark.timing import benchmark_pair
from spade_pl.benchmark.volumes import benchmark_volumes
from spade_pl.core.atomic_io import atomic_write_json, atomic_write_text
from spade_pl.core.errors import require
from spade_pl.data.splits import SplitDataModule
from spade_pl.job.context import JobContext
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.sample import Sample
from spade_pl.weights.runtimes import runtime_table

log = logging.getLogger(__name__)


def benchmark_batch(datamodule: SplitDataModule, settings: BenchmarkSettings) -> Sample:
    """The first test slice, or a synthetic ``benchmark.size`` slice."""
    if settings.size is None:
        return next(iter(datamodule.test_dataloader()))
    return datamodule.synthetic_batch(settings.size, settings.coils)


def benchmark_and_write(
    dense: MBDLNetwork,
    pruned: MBDLNetwork,
    datamodule: SplitDataModule,
    settings: BenchmarkSettings,
    output_dir: Path,
    extra: dict[str, Any] | None = None,
    preface: str = "",
) -> dict[str, Any]:
    """Time dense vs pruned; ``extra`` / ``preface`` (the structure searches) go into benchmark.json / .md too."""
    log.info("[benchmark] dense vs pruned, %d repetitions after %d warm-up", settings.repeats, settings.warmup)
    batch = benchmark_batch(datamodule, settings)
    result = {**benchmark_pair(dense, pruned, batch, settings), **(extra or {})}
    if settings.runtimes:
        log.info("[benchmark] the runtime table: eager, %s", ", ".join(settings.runtimes))
        layouts = {name: result[name]["memory_format"]["chosen"] for name in ("dense", "pruned")}
        result["runtimes"] = runtime_table(dense, pruned, batch, settings, layouts)
    if settings.volume and settings.size is None:
        first = next(whole_volumes(datamodule.test_dataloader()))
        if first.y.shape[0] > 1:  # single images (super-resolution) have no volume to batch
            log.info("[benchmark] dense vs pruned on whole test volumes, each in one forward")
            result["volume"] = benchmark_volumes(dense, pruned, whole_volumes(datamodule.test_dataloader()), settings)
    atomic_write_json(output_dir / "benchmark.json", result)
    text = preface.lstrip("\n") + benchmark_markdown(result)
    atomic_write_text(output_dir / "benchmark.md", text)
    print("\n" + text, flush=True)
    return result


def benchmark(
    ctx: JobContext, dense: MBDLNetwork, pruned: MBDLNetwork, extra: dict[str, Any] | None = None, preface: str = ""
) -> dict[str, Any] | None:
    """Time dense vs pruned (the writer only: the other ranks' numbers would be neither needed nor fair)."""
    if not ctx.writer:
        return None
    settings = BenchmarkSettings(**ctx.cfg.benchmark)
    return benchmark_and_write(dense, pruned, ctx.datamodule, settings, ctx.output_dir, extra, preface)


def dense_network(ctx: JobContext) -> MBDLNetwork:
    """The dense network of ``ckpt_path``, or one with random weights for ``stage=benchmark`` alone."""
    require(
        ctx.cfg.ckpt_path is not None or ctx.cfg.stage == "benchmark",
        f"stage={ctx.cfg.stage} needs ckpt_path=/path/to/dense.ckpt",
    )
    return ctx.networks.dense(ctx.cfg.ckpt_path) if ctx.cfg.ckpt_path else ctx.networks.new()
