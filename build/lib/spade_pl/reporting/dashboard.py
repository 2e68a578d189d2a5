"""``python -m spade_pl.reporting.dashboard --entity E --project P --group G``: a W&B workspace for one sweep, as code.

The workspace shows the sweep's ``summary`` runs (one per job, see :mod:`spade_pl.training.tracking`): the SPADE
trade-off (fine-tuned PSNR/SSIM vs measured speed-up), ΔPSNR vs dense per strategy, a parallel-coordinates
plot from pruning ratio and strategy to quality and speed, and the reconstruction panels of every job.

Building the spec needs no network: by default it is written to ``--out`` (JSON) for review. ``--publish``
saves it to W&B (needs a connection and credentials; upload offline runs first with ``wandb sync``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from spade_pl.core.atomic_io import atomic_write_text

QUALITY = ("finetuned/psnr", "finetuned/ssim", "finetuned/delta_psnr")


def build_workspace(entity: str, project: str, group: str) -> ws.Workspace:
    """The workspace spec for the sweep ``group`` (W&B's run group; a sweep's jobs all share it)."""
    speed = wr.SummaryMetric("speedup_forward")
    tradeoff = [
        wr.ScatterPlot(title=f"{name} vs measured speed-up", x=speed, y=wr.SummaryMetric(name)) for name in QUALITY
    ]
    grid = [
        wr.ParallelCoordinatesPlot(
            title="ratio x strategy -> quality and speed",
            columns=[
                wr.ParallelCoordinatesPlotColumn(metric=wr.Config("prune.ratio")),
                wr.ParallelCoordinatesPlotColumn(metric=wr.Config("finetune.name")),
                *[wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(n)) for n in QUALITY],
                wr.ParallelCoordinatesPlotColumn(metric=speed),
                wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("mac_bound_forward")),
            ],
        ),
        wr.BarPlot(title="PSNR per model", metrics=["dense/psnr", "one_shot/psnr", "finetuned/psnr"]),
    ]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"SPADE sweep {group}",
        sections=[
            ws.Section(name="Quality vs speed", panels=tradeoff, is_open=True),
            ws.Section(name="Grid", panels=grid, is_open=True),
            ws.Section(name="Reconstructions", panels=[wr.MediaBrowser(media_keys=["reconstructions"])], is_open=True),
        ],
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == group, ws.Metric("JobType") == "summary"],
            groupby=[ws.Config("finetune.name")],
        ),
    )


def spec_json(workspace: ws.Workspace) -> str:
    """The workspace as the JSON W&B stores (no network needed)."""
    return workspace._to_model().model_dump_json(by_alias=True, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", default="spade-pl")
    parser.add_argument("--group", required=True, help="the sweep's W&B group, e.g. grid-2026-11-26_10-00-00")
    parser.add_argument("--out", type=Path, default=Path("workspace.json"), help="where to write the spec")
    parser.add_argument("--publish", action="store_true", help="save the workspace to W&B (needs a connection)")
    args = parser.parse_args(argv)
    workspace = build_workspace(args.entity, args.project, args.group)
    atomic_write_text(args.out, spec_json(workspace))
    print(f"wrote the workspace spec for group {args.group!r} to {args.out}")
    if args.publish:
        workspace.save()
        print(f"published: {workspace.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
