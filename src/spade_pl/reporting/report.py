"""Results: a JSON file, a markdown table, a plot, and the same table on the terminal."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spade_pl.core.atomic_io import atomic_write, atomic_write_json, atomic_write_text
from spade_pl.pruning.prune import totals
from spade_pl.reporting.volume_scores import ITERATIONS_KEY


def split_test_results(test_results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """ReconModule.test_results -> (zero-filled entry, reconstruction entry), each {mean, per_volume}; an
    iterative network's entry also holds its mean solver iterations per slice."""
    mean = test_results["mean"]

    def entry(prefix: str) -> dict[str, Any]:
        solver = {ITERATIONS_KEY: mean[ITERATIONS_KEY]} if not prefix and ITERATIONS_KEY in mean else {}
        return {
            "mean": {**{k: mean[f"{prefix}{k}"] for k in ("psnr", "ssim")}, **solver},
            "per_volume": [
                {"volume": v["volume"], "psnr": v[f"{prefix}psnr"], "ssim": v[f"{prefix}ssim"]}
                for v in test_results["per_volume"]
            ],
        }

    return entry("zf_"), entry("")


def transfer_line(conditions: dict[str, Any]) -> str:
    """One line saying how the scored measurements differ from the training ones (a transfer evaluation)."""

    def compact(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k} {compact(v)}" for k, v in value.items())
        return "/".join(map(str, value)) if isinstance(value, list) else str(value)

    return (
        "**Transfer evaluation**: every model scored on measurements unlike its training ones ("
        + "; ".join(f"{key.replace('_', ' ')}: {compact(value)}" for key, value in conditions.items())
        + ")"
    )


def markdown_table(results: dict[str, Any]) -> str:
    """Mean PSNR/SSIM per model (and Δ to the dense model when there is one; an iterative network's solver
    iterations per slice), then per-volume PSNR/SSIM."""
    models: dict[str, Any] = results["models"]
    ref = models.get("dense", {}).get("mean", {}).get("psnr")
    solved = any(ITERATIONS_KEY in entry["mean"] for entry in models.values())
    lines = [
        f"Metrics on the {results.get('split', 'test')} split ({results['convention']} convention, "
        f"{results.get('num_volumes', '?')} held-out volumes)",
        *([transfer_line(results["transfer"])] if results.get("transfer") else []),
        "",
        "| model | PSNR (dB) | SSIM | ΔPSNR vs dense (dB) |" + (" solver iterations per slice |" if solved else ""),
        "|---|---:|---:|---:|" + ("---:|" if solved else ""),
    ]
    for name, entry in models.items():
        delta = f"{entry['mean']['psnr'] - ref:+.2f}" if ref is not None else "n/a"
        iterations = entry["mean"].get(ITERATIONS_KEY)
        solver = (f" {iterations:.1f} |" if iterations is not None else " |") if solved else ""
        lines.append(f"| {name} | {entry['mean']['psnr']:.2f} | {entry['mean']['ssim']:.4f} | {delta} |" + solver)
    volumes = [v["volume"] for v in next(iter(models.values()))["per_volume"]]
    lines += ["", "Per volume (PSNR dB / SSIM):", "", "| volume | " + " | ".join(models) + " |"]
    lines.append("|---|" + "---:|" * len(models))
    for i, volume in enumerate(volumes):
        cells = [f"{m['per_volume'][i]['psnr']:.2f} / {m['per_volume'][i]['ssim']:.4f}" for m in models.values()]
        lines.append(f"| {volume} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def displayable(image: np.ndarray) -> np.ndarray:
    """``(h, w)`` grey, ``(1, h, w)`` grey or ``(3, h, w)`` RGB -> what ``imshow`` takes, clipped to [0, 1]."""
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    return np.clip(image, 0, 1)


def plot_results(
    results: dict[str, Any], path: Path, examples: Mapping[str, Mapping[str, np.ndarray]] | None = None
) -> None:
    """One test slice per model with its error map (x5) above bar charts of mean PSNR and SSIM per model.

    ``examples`` maps a model name to its ``ReconModule.example`` (prediction, zero-filled, target of the
    same slice); without them only the bars are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    examples = dict(examples or {})
    images: dict[str, np.ndarray] = {}
    if examples:
        first = next(iter(examples.values()))
        baseline = next(iter(models))  # the classical reconstruction comes first (zero-filled, bicubic)
        images = {baseline: first["zero_filled"], **{n: e["prediction"] for n, e in examples.items()}}
    columns = max(len(images) + 1, 2)
    image_rows = 2 if images else 0
    fig = plt.figure(figsize=(max(2.2 * columns, 2 + 1.4 * len(models)), 2.3 * image_rows + 3.4))
    grid = fig.add_gridspec(image_rows + 1, columns, height_ratios=[1] * image_rows + [1.4])
    if images:
        target = first["target"]
        scale = max(float(target.max()), 1e-12)
        for col, (name, image) in enumerate([*images.items(), ("ground truth", target)]):
            ax = fig.add_subplot(grid[0, col])
            ax.imshow(displayable(image / scale), cmap="gray", vmin=0, vmax=1)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
            if name != "ground truth":
                err = fig.add_subplot(grid[1, col])
                error = np.abs(image - target)
                error = error.mean(0) if error.ndim == 3 else error  # colour: the mean over channels
                err.imshow(error / scale * 5, cmap="magma", vmin=0, vmax=1)
                err.set_title(f"|error| x5, {name}", fontsize=7)
                err.axis("off")
    half = columns // 2
    for span, metric in zip((slice(0, half), slice(half, columns)), ("psnr", "ssim"), strict=True):
        ax = fig.add_subplot(grid[image_rows, span])
        values = [m["mean"][metric] for m in models.values()]
        ax.bar(list(models), values, color="tab:blue")
        ax.set_title(f"mean {metric.upper()} ({results['convention']})", fontsize=9)
        ax.set_ylim(min(values) * 0.95, max(values) * 1.01)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def pruning_markdown(
    reports: dict[str, Any], network_params: tuple[int, int] | None = None, depth: dict[str, Any] | None = None
) -> str:
    """Per prior and in total: conv widths before -> after, parameters, MACs per prior call (a removed stage's
    prior: all 0); the stages depth pruning kept (``depth``, the structure's record); and the whole network's
    parameters (``network_params``: before, after), the parts pruning leaves dense included."""
    lines = [
        "Pruning (per prior; MACs per call of that prior)",
        "",
        "| prior | widths | params | MACs per call |",
        "|---|---|---:|---:|",
    ]
    for name, r in reports.items():
        widths = f"{'/'.join(map(str, r.widths_before))} → {'/'.join(map(str, r.widths_after)) or 'removed'}"
        lines.append(
            f"| {name} | {widths} | {r.params_before:,} → {r.params_after:,} | {r.macs_before:,} → {r.macs_after:,} |"
        )
    if reports:
        params_b, params_a, macs_b, macs_a = totals(reports).values()
        lines.append(
            f"| total | | {params_b:,} → {params_a:,} ({params_a / params_b:.1%}) "
            f"| {macs_b:,} → {macs_a:,} ({macs_a / macs_b:.1%}) |"
        )
    if depth:
        kept = ", ".join(map(str, depth["kept"]))
        lines += ["", f"Stages kept: {kept} of 0..{depth['stages'] - 1} ({len(depth['kept'])} of {depth['stages']})"]
    if network_params is not None and network_params[0]:
        before, after = network_params
        lines += ["", f"Whole network: {before:,} → {after:,} parameters ({after / before:.1%})"]
    return "\n".join(lines) + "\n"


def cost_markdown(costs: dict[str, dict[str, Any]]) -> str:
    """What each stage of the job cost: wall time, epochs, optimizer steps, device (a cached teacher's as it was
    trained)."""
    lines = [
        "Cost per stage",
        "",
        "| stage | wall time (s) | epochs | optimizer steps | device |",
        "|---|---:|---:|---:|---|",
    ]
    for stage, cost in costs.items():
        name = f"{stage} (cached teacher)" if cost.get("cached") else stage
        device = f"{cost['device']} x{cost['devices']}" if cost.get("devices", 1) > 1 else cost.get("device", "")
        wall = f"{cost['wall_s']:.1f}" if "wall_s" in cost else ""
        lines.append(f"| {name} | {wall} | {cost.get('epochs', '')} | {cost.get('optimizer_steps', '')} | {device} |")
    return "\n".join(lines) + "\n"


def write_results(
    output_dir: Path,
    results: dict[str, Any],
    extra_markdown: str = "",
    examples: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> str:
    """Write results.png, results.md and, last (it marks the stage as finished), results.json; return the markdown."""
    text = markdown_table(results) + extra_markdown
    plot_results(results, output_dir / "results.png", examples)
    atomic_write_text(output_dir / "results.md", text)
    atomic_write_json(output_dir / "results.json", results)
    return text
