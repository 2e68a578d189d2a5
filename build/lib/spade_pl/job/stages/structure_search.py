"""The pruned structure chosen by measurement on this device: ``prune.target_speedup`` (the smallest ratio that
reaches a speed-up) and ``prune.round_to=auto`` (the channel multiple that runs fastest).

Both time pruned copies of the dense network with the benchmark, before any fine-tuning; each choice is written
to the run folder, and a resumed run reads it back instead of measuring again (timing noise must not change the
pruned structure of a run half done).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.timing import benchmark_pair, time_forwards
from spade_pl.core.atomic_io import atomic_write_json
from spade_pl.core.errors import SpadeInputError
from spade_pl.job.context import JobContext
from spade_pl.job.stages.benchmark import benchmark_batch
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.sample import Sample
from spade_pl.pruning.counting import conv_widths
from spade_pl.pruning.prune import PruningResult, prune_network
from spade_pl.pruning.settings import PruneSettings
from spade_pl.pruning.target import TargetSearch, largest_ratio, smallest_ratio_reaching
from spade_pl.pruning.widths import CANDIDATES, Candidate, WidthChoice, choose_round_to

log = logging.getLogger(__name__)


class StructureSearch:
    """Measures the structure choices ``settings`` asks for; ``settings`` then holds the chosen ratio and
    multiple. ``batch()`` gives the benchmark's input, ``output_dir`` keeps the choices (``resumed``: reuse)."""

    def __init__(
        self,
        settings: PruneSettings,
        benchmark: BenchmarkSettings,
        batch: Callable[[], Sample],
        output_dir: Path,
        resumed: bool,
    ):
        self.settings, self.benchmark, self.batch = settings, benchmark, batch
        self.output_dir, self.resumed = output_dir, resumed

    def choose(self, dense: MBDLNetwork, extra: dict[str, Any]) -> str:
        """Every choice the settings ask for, into ``self.settings`` and the results (``extra``); returns the
        report's paragraphs."""
        device = str(self.benchmark.torch_device())
        markdown = ""
        search = self.choose_ratio(dense)
        if search is not None:
            extra["target_speedup"] = search.as_dict()
            markdown += search.markdown(device)
        widths = self.choose_widths(dense)
        if widths is not None:
            extra["round_to"] = widths.as_dict()
            markdown += widths.markdown(device)
        return markdown

    def _measured_once(self, filename: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A measured choice, or, in a resumed run, the one its folder made."""
        chosen = self.output_dir / filename
        if self.resumed and chosen.is_file():
            return json.loads(chosen.read_text())
        result = measure()
        atomic_write_json(chosen, result)
        return result

    def _pruned_copy(self, dense: MBDLNetwork, batch: Sample, **settings: Any) -> tuple[MBDLNetwork, PruningResult]:
        pruned = copy.deepcopy(dense)
        return pruned, prune_network(pruned, batch.y, batch.physics(), replace(self.settings, **settings))

    def choose_ratio(self, dense: MBDLNetwork) -> TargetSearch | None:
        """``prune.target_speedup``: the ratio measured to reach it on this device, used from here on."""
        target = self.settings.target_speedup
        if target is None:
            return None

        def search() -> dict[str, Any]:
            batch = self.batch()

            def speedup_at(ratio: float) -> float:
                pruned = self._pruned_copy(dense, batch, ratio=ratio)[0]
                return benchmark_pair(dense, pruned, batch, self.benchmark)["speedup_forward"]

            log.info("[prune] choosing the ratio that reaches %.2fx on this device, by measurement", target)
            widths = [
                width
                for name in self.settings.prior_names(dense)
                for width in conv_widths(dense.priors()[name], dense.prior_output_layers()[name])
            ]
            return smallest_ratio_reaching(target, speedup_at, largest_ratio(widths)).as_dict()

        chosen = TargetSearch(**self._measured_once("target_speedup.json", search))
        self.settings = replace(self.settings, ratio=chosen.ratio)
        return chosen

    def choose_widths(self, dense: MBDLNetwork) -> WidthChoice | None:
        """``prune.round_to=auto``: the multiple measured fastest on this device, used from here on."""
        if self.settings.round_to != "auto" or not self.settings.prunes:
            return None

        def measure() -> dict[str, Any]:
            batch = self.batch()
            networks, candidates = {}, []
            for multiple in CANDIDATES:
                try:
                    pruned, result = self._pruned_copy(dense, batch, round_to=multiple if multiple > 1 else None)
                except SpadeInputError as err:  # it would empty a group: too coarse for these widths
                    log.info("[prune] round_to=%d skipped: %s", multiple, err)
                    continue
                networks[multiple] = pruned
                widths = {name: rep.widths_after for name, rep in result.reports.items()}
                macs = sum(rep.macs_after for rep in result.reports.values())
                candidates.append(Candidate(multiple, widths, macs))
            log.info("[prune] choosing round_to among %s on this device, by measurement", list(networks))

            def time_all(multiples: list[int]) -> dict[int, float]:
                return time_forwards({m: networks[m] for m in multiples}, batch, self.benchmark)

            return choose_round_to(candidates, time_all).as_dict()

        chosen = WidthChoice.from_dict(self._measured_once("round_to.json", measure))
        self.settings = replace(self.settings, round_to=chosen.round_to if chosen.round_to > 1 else None)
        return chosen


def choose_structure(ctx: JobContext, dense: MBDLNetwork, extra: dict[str, Any]) -> tuple[PruneSettings, str]:
    """The job's pruning settings with the measured choices made (into ``extra`` for the results), and the
    report's paragraphs."""
    settings = BenchmarkSettings(**ctx.cfg.benchmark)
    search = StructureSearch(
        ctx.prune, settings, lambda: benchmark_batch(ctx.datamodule, settings), ctx.output_dir, ctx.resumed
    )
    markdown = search.choose(dense, extra)
    return search.settings, markdown
