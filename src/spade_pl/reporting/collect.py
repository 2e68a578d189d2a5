"""``python -m spade_pl.reporting.collect RUN_OR_SWEEP_DIR ... [--out DIR]``: one table and one plot for a sweep.

Reads every ``results.json`` under the given folders (a Hydra multirun folder, or run folders) and writes into
``--out`` (default: the first folder):

- ``sweep.csv`` and ``sweep.md``: one row per job (ratio, strategy, PSNR/SSIM/ΔPSNR of every model by role,
  measured speed-up, MAC bound, parameters), the same record every job sends to W&B as its summary;
- ``seeds.csv`` and a section of ``sweep.md``: the jobs that differ only in ``seed``, as mean ± standard
  deviation and every value of the headline numbers;
- ``pareto.png``: PSNR and SSIM vs measured speed-up, one curve per fine-tuning strategy (means over seeds,
  with their spread as error bars), the dense model at 1x and the one-shot pruned models marked — quality
  against speed, the SPADE trade-off.

Jobs of a sweep that left no ``results.json`` (failed or still running) are listed, not silently dropped.
Every ``-m`` run also does this after each job and at its end (:class:`CollectSweep`, a Hydra callback).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from spade_pl.core.atomic_io import atomic_write, atomic_write_text
from spade_pl.reporting.results import summary_record

log = logging.getLogger(__name__)
STRATEGY_STYLE = {
    "supervised": "tab:green",
    "distill": "tab:blue",
    "selfsup": "tab:orange",
    "scratch": "tab:gray",
    "scratch_distill": "tab:purple",
    "scratch_total": "tab:brown",
    "scratch_distill_total": "tab:pink",
}
# the markdown table's columns (sweep.csv has every key of the records)
TABLE = {
    "ratio": "ratio",
    "depth": "depth",
    "strategy": "strategy",
    "scored_on": "scored on (transfer)",
    "dense/psnr": "dense PSNR",
    "one_shot/psnr": "one-shot PSNR",
    "finetuned/psnr": "fine-tuned PSNR",
    "finetuned/delta_psnr": "ΔPSNR vs dense",
    "dense/ssim": "dense SSIM",
    "finetuned/ssim": "fine-tuned SSIM",
    "speedup_forward": "speed-up",
    "mac_bound_forward": "MAC bound",
    "memory_ratio": "peak memory, dense / pruned",
    "model/psnr": "PSNR",
    "model/ssim": "SSIM",
}


def rows_from(paths: list[Path]) -> list[dict[str, Any]]:
    """One summary record per ``results.json`` below ``paths``, with the job's folder first."""
    rows = []
    for results_file in sorted(f for p in paths for f in p.rglob("results.json")):
        record = summary_record(json.loads(results_file.read_text()))
        rows.append({"run": str(results_file.parent), **record})
    return sorted(rows, key=lambda r: (str(r["strategy"]), r["ratio"] if r["ratio"] is not None else -1, r["run"]))


def unfinished_jobs(paths: list[Path]) -> list[Path]:
    """Hydra job folders (they hold ``.hydra/``) without a ``results.json``."""
    return sorted(h.parent for p in paths for h in p.rglob(".hydra") if not (h.parent / "results.json").is_file())


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("speedup_forward", "mac_bound_forward", "memory_ratio"):
        return f"{value:.2f}x"
    if key.endswith("psnr"):
        return f"{value:+.2f}" if "delta" in key else f"{value:.2f}"
    if key.endswith("ssim"):
        return f"{value:.4f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The headline columns (:data:`TABLE`) of every job, one row each."""
    columns = [c for c in TABLE if any(c in row for row in rows)]
    lines = ["| " + " | ".join(TABLE[c] for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# the numbers aggregated over seeds
SEED_KEYS = (
    "dense/psnr",
    "one_shot/psnr",
    "finetuned/psnr",
    "finetuned/ssim",
    "finetuned/delta_psnr",
    "speedup_forward",
)


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per setting that ran with two or more seeds: ``n``, the seeds, and per headline number its
    mean, standard deviation (sample, n - 1) and values in seed order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if "seed" in row:
            groups[row["setting"]].append(row)
    records = []
    for setting, members in sorted(groups.items()):
        members.sort(key=lambda r: r["seed"])
        if len({r["seed"] for r in members}) < 2:
            continue
        record: dict[str, Any] = {"setting": setting or "(defaults)", "n": len(members)}
        record["seeds"] = [r["seed"] for r in members]
        for key in SEED_KEYS:
            values = [r[key] for r in members if r.get(key) is not None]
            if len(values) == len(members):
                record[key] = {"mean": statistics.mean(values), "std": statistics.stdev(values), "values": values}
        records.append(record)
    return records


def seeds_markdown(records: list[dict[str, Any]]) -> str:
    """The settings run with several seeds: mean ± std (each value) of every headline number."""
    keys = [k for k in SEED_KEYS if any(k in r for r in records)]
    lines = [
        "Over seeds (mean ± standard deviation; each seed's value)",
        "",
        "| setting | seeds | " + " | ".join(TABLE.get(k, k) for k in keys) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    for r in records:
        cells = []
        for key in keys:
            stat = r.get(key)
            if stat is None:
                cells.append("")
                continue
            each = ", ".join(_cell(key, v) for v in stat["values"])
            spread = f"{stat['std']:.4f}" if key.endswith("ssim") else f"{stat['std']:.2f}"
            cells.append(f"{_cell(key, stat['mean'])} ± {spread} ({each})")
        lines.append(f"| {r['setting']} | {', '.join(map(str, r['seeds']))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_curves(rows: list[dict[str, Any]], metric: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per strategy, its points ``(speed-up, mean quality, spread over seeds, ratio)`` in ratio order.

    Every job at one pruning ratio times the same pruned widths (one teacher, one pruning), so a ratio's point
    sits at the median speed-up its jobs measured: one timing's noise does not move one strategy's point alone.
    Jobs scored on other measurements than they trained on (transfer evaluations) are left out; ``one_shot``
    holds the one-shot pruned models (spread 0)."""
    timed = [r for r in rows if "scored_on" not in r and r.get("speedup_forward") is not None]
    by_ratio: dict[float, list[float]] = defaultdict(list)
    for r in timed:
        by_ratio[r["ratio"]].append(r["speedup_forward"])
    speedup = {ratio: statistics.median(values) for ratio, values in by_ratio.items()}
    values: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    one_shot: dict[tuple[float, Any], float] = {}  # every job of a ratio and seed reports the same one-shot model
    for r in timed:
        if f"finetuned/{metric}" in r:
            values[r["strategy"]][r["ratio"]].append(r[f"finetuned/{metric}"])
        if f"one_shot/{metric}" in r:
            one_shot[(r["ratio"], r.get("seed"))] = r[f"one_shot/{metric}"]
    for (ratio, _), value in one_shot.items():
        values["one_shot"][ratio].append(value)
    return {
        strategy: [
            (speedup[ratio], statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, ratio)
            for ratio, v in sorted(by.items())
        ]
        for strategy, by in sorted(values.items())
    }


def plot_pareto(rows: list[dict[str, Any]], path: Path) -> None:
    """PSNR and SSIM vs measured whole-forward speed-up (:func:`pareto_curves`): a curve per strategy with the
    spread over seeds as error bars, dense at 1x, the one-shot pruned models marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {r["strategy"]: r.get("finetuned_label", f"pruned + {r['strategy']}") for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        curves = pareto_curves(rows, metric)
        for strategy, points in curves.items():
            xs, ys, spread, ratios = zip(*points, strict=True)
            if strategy == "one_shot":
                ax.plot(xs, ys, "x", color="tab:red", label="pruned, one-shot")
                continue
            ax.errorbar(
                xs, ys, yerr=spread, fmt="o-", capsize=3, color=STRATEGY_STYLE.get(strategy), label=labels[strategy]
            )
            for x, y, ratio in zip(xs, ys, ratios, strict=True):
                ax.annotate(f"{ratio:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        dense = [r[f"dense/{metric}"] for r in rows if f"dense/{metric}" in r and "scored_on" not in r]
        if dense:
            ax.plot([1.0], [sum(dense) / len(dense)], "*", color="black", markersize=12, label="dense")
        ax.set_xlabel("measured speed-up of the whole forward (x; median of the ratio's jobs)")
        ax.set_ylabel(f"test {metric.upper()}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("SPADE: quality vs speed (labels: pruning ratio)", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def collect(paths: list[Path], out: Path) -> str:
    """Write sweep.csv, sweep.md and pareto.png for the jobs below ``paths`` into ``out``; return the markdown."""
    rows = rows_from(paths)
    if not rows:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, paths))}")
    markdown = to_markdown(rows)
    seeds = over_seeds(rows)
    if seeds:
        markdown += "\n" + seeds_markdown(seeds)
        flat = [
            {"setting": r["setting"], "n": r["n"], "seeds": " ".join(map(str, r["seeds"]))}
            | {f"{k}/{stat}": r[k][stat] for k in SEED_KEYS if k in r for stat in ("mean", "std")}
            for r in seeds
        ]
        atomic_write_text(out / "seeds.csv", to_csv(flat))
    missing = unfinished_jobs(paths)
    if missing:
        markdown += f"\n{len(missing)} job(s) left no results.json (failed or unfinished): "
        markdown += ", ".join(str(m) for m in missing) + "\n"
    atomic_write_text(out / "sweep.csv", to_csv(rows))
    atomic_write_text(out / "sweep.md", markdown)
    plot_pareto(rows, out / "pareto.png")
    return markdown


class CollectSweep(Callback):
    """Hydra callback: keeps ``sweep.md``, ``sweep.csv`` and ``pareto.png`` of a ``-m`` run up to date.

    It collects after every job (so the table exists even when a failed job makes Hydra stop with an error at
    the end, and shows progress while a long sweep runs) and once more, printing the table, when the sweep ends.
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            sweep_dir = Path(config.hydra.runtime.output_dir).parent
            with contextlib.suppress(FileNotFoundError):
                collect([sweep_dir], sweep_dir)
                log.info("[collect] updated %s/sweep.{md,csv} and pareto.png", sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            markdown = collect([sweep_dir], sweep_dir)
        except FileNotFoundError:
            log.warning("[collect] no job of %s wrote results.json: nothing to collect", sweep_dir)
            return
        print("\n" + markdown, flush=True)
        log.info("[collect] wrote %s/sweep.{md,csv} and pareto.png", sweep_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        print(collect(args.paths, args.out or args.paths[0]))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
