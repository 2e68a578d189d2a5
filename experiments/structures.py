"""Which structure to remove: width only, depth only or both, at matched MACs of the pruned priors.

    python experiments/structures.py SWEEP_DIR [SWEEP_DIR ...] --out DIR

Reads every job's ``results.json`` under the sweep folders (one sweep over ``prune={ratio:..,depth:..}`` pairs and
seeds, a DEQ's perhaps with and without ``finetune.contractivity_weight``), groups the jobs by their (ratio, depth,
contractivity weight) and writes into ``--out``: ``structures.csv`` (one row per
group: the pruned priors' MACs as a share of their dense MACs, PSNR/SSIM of the dense, one-shot and fine-tuned
networks, the measured speed-up per slice and per volume, solver iterations where the network has a solver; mean
and standard deviation over the seeds), ``structures.md`` (the same as a table, also printed) and
``structures.png`` (fine-tuned PSNR against measured speed-up per slice, one marker per structure, hollow with the
contractivity term, each point labelled with its share of the prior MACs).

The share counts what pruning targeted (``results.json``'s ``pruning``: every pruned prior, a removed stage at 0),
per prior call: a DEQ's iteration count is reported on its own.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from spade_pl.reporting.results import models_by_role

STRUCTURE_STYLE = {"width only": ("tab:blue", "o"), "depth only": ("tab:orange", "s"), "both": ("tab:green", "^")}
NUMBERS = (
    "prior_macs_share",
    "dense/psnr",
    "one_shot/psnr",
    "finetuned/psnr",
    "finetuned/ssim",
    "finetuned/delta_psnr",
    "speedup_per_slice",
    "speedup_per_volume",
    "dense/solver_iterations",
    "finetuned/solver_iterations",
)


def structure(ratio: float, depth: float) -> str:
    return "width only" if not depth else "depth only" if not ratio else "both"


def job_numbers(results: dict[str, Any]) -> dict[str, float]:
    """The numbers of one job: prior MAC share, quality by role, measured speed-ups, solver iterations."""
    pruned = results["pruning"].values()
    share = sum(p["macs_after"] or 0 for p in pruned) / sum(p["macs_before"] for p in pruned)
    models = models_by_role(results)
    numbers = {"prior_macs_share": share, "speedup_per_slice": results["benchmark"]["speedup_forward"]}
    if volume := results["benchmark"].get("volume"):
        numbers["speedup_per_volume"] = volume["speedup"]
    for role in ("dense", "one_shot", "finetuned"):
        for key, value in models[role]["mean"].items():
            numbers[f"{role}/{key}"] = value
    numbers["finetuned/delta_psnr"] = numbers["finetuned/psnr"] - numbers["dense/psnr"]
    return numbers


def contractivity_weight(results_path: Path) -> float:
    """The job's ``finetune.contractivity_weight``, from the resolved config beside its results (a run folder's
    ``.hydra/config.yaml``, or ``config.yaml`` where experiments/run_experiment.sh copied it)."""
    for config in (results_path.parent / ".hydra" / "config.yaml", results_path.parent / "config.yaml"):
        if config.exists():
            return float(OmegaConf.select(OmegaConf.load(config), "finetune.contractivity_weight", default=0.0))
    raise FileNotFoundError(f"no resolved config beside {results_path}")


def grouped(folders: list[Path]) -> list[dict[str, Any]]:
    """One row per (ratio, depth, contractivity weight): the seeds and, per number, its mean and standard deviation
    over them; ordered by budget (the share of the prior MACs to the nearest quarter, largest first), so the
    structures compared at one budget sit together, then by structure and weight."""
    groups: dict[tuple[float, float, float], list[tuple[int, dict[str, float]]]] = defaultdict(list)
    for path in sorted(f for folder in folders for f in folder.rglob("results.json")):
        results = json.loads(path.read_text())
        prune = results["prune"]
        key = (prune["ratio"], prune.get("depth", 0.0), contractivity_weight(path))
        groups[key].append((results["seed"], job_numbers(results)))
    rows = []
    for (ratio, depth, weight), jobs in groups.items():
        row: dict[str, Any] = {"structure": structure(ratio, depth), "ratio": ratio, "depth": depth}
        row["contractivity_weight"] = weight
        row["seeds"] = " ".join(str(seed) for seed, _ in sorted(jobs))
        for key in NUMBERS:
            values = [numbers[key] for _, numbers in jobs if key in numbers]
            if values:
                row[f"{key}/mean"] = statistics.mean(values)
                row[f"{key}/std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return sorted(
        rows,
        key=lambda r: (
            -round(4 * r["prior_macs_share/mean"]),  # budget bands: about a half, about a quarter, ...
            list(STRUCTURE_STYLE).index(r["structure"]),
            r["contractivity_weight"],
        ),
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], key: str, digits: int) -> str:
        if f"{key}/mean" not in row:
            return ""
        return f"{row[f'{key}/mean']:.{digits}f} ± {row[f'{key}/std']:.{digits}f}"

    solver = any("finetuned/solver_iterations/mean" in r for r in rows)
    weighted = any(r["contractivity_weight"] for r in rows)
    head = "| structure | ratio | depth |" + (" contractivity |" if weighted else "") + " prior MACs | seeds |"
    head += " dense PSNR | one-shot PSNR | fine-tuned PSNR | SSIM | ΔPSNR | speed-up per slice | per volume |"
    head += " iterations, dense | fine-tuned |" if solver else ""
    lines = [head, "|---|---:|---:|" + "---:|" * weighted + "---:|---|" + "---:|" * (7 + 2 * solver)]
    for r in rows:
        cells = [r["structure"], f"{r['ratio']:g}", f"{r['depth']:g}"]
        cells += [f"{r['contractivity_weight']:g}"] * weighted
        cells += [
            f"{100 * r['prior_macs_share/mean']:.0f} %",
            r["seeds"],
            cell(r, "dense/psnr", 2),
            cell(r, "one_shot/psnr", 2),
            cell(r, "finetuned/psnr", 2),
            cell(r, "finetuned/ssim", 4),
            cell(r, "finetuned/delta_psnr", 2),
            cell(r, "speedup_per_slice", 2) + "x",
            cell(r, "speedup_per_volume", 2) + "x",
        ]
        if solver:
            cells += [cell(r, "dense/solver_iterations", 1), cell(r, "finetuned/solver_iterations", 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (name, (colour, marker)), weighted in itertools.product(STRUCTURE_STYLE.items(), (False, True)):
        mine = [r for r in rows if r["structure"] == name and bool(r["contractivity_weight"]) == weighted]
        if not mine:
            continue
        ax.errorbar(
            [r["speedup_per_slice/mean"] for r in mine],
            [r["finetuned/psnr/mean"] for r in mine],
            xerr=[r["speedup_per_slice/std"] for r in mine],
            yerr=[r["finetuned/psnr/std"] for r in mine],
            fmt=marker,
            color=colour,
            markerfacecolor="none" if weighted else colour,
            label=f"{name}, contractivity {mine[0]['contractivity_weight']:g}" if weighted else name,
            capsize=3,
        )
        for r in mine:
            label = f"{100 * r['prior_macs_share/mean']:.0f}%"
            ax.annotate(
                label,
                (r["speedup_per_slice/mean"], r["finetuned/psnr/mean"]),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=7,
            )
    dense = statistics.mean(r["dense/psnr/mean"] for r in rows)
    ax.axhline(dense, color="black", linestyle="--", linewidth=0.8, label="dense (mean over seeds)")
    ax.set_xlabel("measured speed-up per slice (x, mean over seeds)")
    ax.set_ylabel("PSNR after distillation (dB)")
    ax.set_title("Width vs depth at matched prior MACs (labels: share of the dense prior MACs)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = grouped(args.folders)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "structures.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}, key=lambda k: (k != "structure", k)))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    (args.out / "structures.md").write_text(table)
    plot(rows, args.out / "structures.png")
    print(table)


if __name__ == "__main__":
    main()
