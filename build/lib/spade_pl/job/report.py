"""The job's report: every scored model by role and label, the job's extras, the summary; written by the writer
(results.json / .md / .png, the tracking summary run) and printed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.hydra_config import HydraConfig

from spade_pl.job.context import JobContext
from spade_pl.reporting.report import split_test_results, write_results
from spade_pl.reporting.results import BASELINE, SCHEMA_VERSION, summary_record
from spade_pl.reporting.summary import run_summary, summary_text
from spade_pl.training.lightning_module import ReconModule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """A model the job scored: its role (:mod:`spade_pl.reporting.results`), its label, its tested module."""

    role: str
    label: str
    module: ReconModule


def report(ctx: JobContext, scored: list[Scored], extra: dict[str, Any] | None = None, markdown: str = "") -> dict:
    """Combine the test results of ``scored`` (the problem's baseline taken from the first) and write them out."""
    first = scored[0].module.test_results
    baseline = ctx.cfg.problem.get("baseline", "zero-filled")
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "stage": ctx.cfg.stage,
        "split": ctx.datamodule.eval_split,
        "convention": first["convention"],
        "num_volumes": len(first["per_volume"]),
        "seed": ctx.cfg.seed,
        # the job's own overrides (a sweep's axes): collect groups the jobs that differ only in seed
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "models": {
            baseline: split_test_results(first)[0],
            **{s.label: split_test_results(s.module.test_results)[1] for s in scored},
        },
        "roles": {BASELINE: baseline, **{s.role: s.label for s in scored}},
        **(extra or {}),
    }
    if conditions := ctx.datamodule.evaluation_conditions():
        results["transfer"] = conditions
    if ctx.training.validation:
        results["validation"] = ctx.training.validation
    if summary := run_summary(results):
        results["summary"] = summary
        markdown += "\n" + summary_text(summary)
    if not ctx.writer:
        return results
    examples = {s.label: s.module.example for s in scored if s.module.example}
    text = write_results(ctx.output_dir, results, markdown, examples)
    ctx.training.tracking.log_summary(summary_record(results), ctx.output_dir / "results.png")
    print("\n" + text, flush=True)
    log.info("[report] wrote %s/results.{json,md,png}", ctx.output_dir)
    return results
