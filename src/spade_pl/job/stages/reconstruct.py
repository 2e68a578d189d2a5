"""``stage=reconstruct``: put a network (dense or pruned) to work on scans or images, ground truth or not.

Every file of ``data.root`` (or of ``reconstruct.split``) is reconstructed, one volume in memory at a time, into
``<run>/reconstructions/<file name>``, in the user's own format and scale (the problem's
:class:`~spade_pl.data.reconstruction.Reconstructions` says how: fastMRI ``.h5`` files as
``fastmri.save_reconstructions`` writes them, images at their source's format and bit depth). Each file is
written atomically and a rerun in the same run folder skips the volumes already written, so a killed job resumes.
Volumes that carry their ground truth are also scored, the way ``stage=test`` scores them. An iterative network
(DEQ) starts each slice from the previous slice's solution (``warm_start``) and its solver iterations per slice are
reported.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.core.atomic_io import atomic_write_json, atomic_write_text
from spade_pl.core.errors import require
from spade_pl.data.reconstruction import Reconstructions
from spade_pl.job.context import JobContext
from spade_pl.models.base import MBDLNetwork
from spade_pl.reporting.volume_scores import VolumeScores, summarise

log = logging.getLogger(__name__)


def stage_reconstruct(ctx: JobContext) -> dict[str, Any]:
    cfg = ctx.cfg
    require(cfg.ckpt_path is not None, "stage=reconstruct needs ckpt_path=/path/to/model.ckpt (dense or pruned)")
    if not ctx.writer:
        return {}
    items = ctx.datamodule.reconstruction_dataset(cfg.reconstruct.split)  # every file checked first
    network, structure = ctx.networks.load(cfg.ckpt_path)
    device = BenchmarkSettings(**cfg.benchmark).torch_device()
    network = network.to(device).eval()
    folder = ctx.output_dir / "reconstructions"
    scores = VolumeScores(cfg.problem.metric_convention, int(cfg.problem.get("metric_border", 0)))
    records = []
    for name, indices in tqdm(list(items.volumes.items()), desc="reconstruct", unit="volume"):
        target = folder / name
        if target.is_file():
            log.info("[reconstruct] %s was written before: skipped", target)
            records.append({"volume": name, "skipped": True})
            continue
        loader = DataLoader(Subset(items.dataset, indices), batch_size=1)  # slice by slice, as stage=test scores
        started = time.perf_counter()
        reconstruction, iterations = reconstruct_volume(
            network, loader, device, items, scores if name in items.scored else None, bool(cfg.warm_start)
        )
        seconds = time.perf_counter() - started
        items.write(target, name, reconstruction)
        record = {"volume": name, "slices": len(reconstruction), "seconds": seconds}
        if iterations:
            record["solver_iterations"] = iterations
        records.append(record)
    scored = scores.finish()
    result = {
        "checkpoint": str(cfg.ckpt_path),
        "pruned": structure is not None,
        "device": str(device),
        "warm_start": bool(cfg.warm_start),
        "folder": str(folder),
        "volumes": records,
        **throughput(records),
    }
    if scored:
        result["metrics"] = summarise(scored, cfg.problem.metric_convention)
    atomic_write_json(ctx.output_dir / "reconstructions.json", result)
    text = reconstruction_markdown(result)
    atomic_write_text(ctx.output_dir / "reconstructions.md", text)
    print("\n" + text, flush=True)
    return result


def reconstruct_volume(
    network: MBDLNetwork,
    loader: DataLoader,
    device: torch.device,
    items: Reconstructions,
    scores: VolumeScores | None,
    warm_start: bool = False,
) -> tuple[np.ndarray, list[int]]:
    """The volume's reconstruction (slices first) in the output's own scale, and an iterative network's solver
    iterations per slice (empty for others); its slices are scored as ``stage=test`` scores them when ``scores``
    is given (the volume has ground truth). ``warm_start``: each slice starts from the previous one's solution."""
    slices, iterations = [], []
    with torch.no_grad():
        for batch in loader:
            batch = type(batch)(*(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch))
            if warm_start:
                network.next_slice_of(batch.fname[0], int(batch.slice_num[0]))
            image = batch.image(network(batch.y, batch.physics())).float()
            slices.append(items.stored(batch, image))
            if stats := network.solver_stats:
                iterations.append(int(stats["iterations"]))
            if scores is not None:
                for i, fname in enumerate(batch.fname):
                    arrays = (t[i].float().cpu().numpy() for t in (image, batch.baseline(), batch.target))
                    scores.add(fname, int(batch.slice_num[i]), *arrays, iterations=last(iterations))
    return np.concatenate(slices), iterations


def last(values: list[int]) -> int | None:
    return values[-1] if values else None


def throughput(records: list[dict[str, Any]]) -> dict[str, float]:
    """Slices, seconds and slices per second over the volumes reconstructed now, and the median per volume."""
    done = [r for r in records if not r.get("skipped")]
    slices, seconds = sum(r["slices"] for r in done), sum(r["seconds"] for r in done)
    per_volume = float(np.median([r["seconds"] for r in done])) if done else 0.0
    return {
        "slices": slices,
        "seconds": seconds,
        "slices_per_s": slices / seconds if seconds else 0.0,
        "median_s_per_volume": per_volume,
    }


def reconstruction_markdown(result: dict[str, Any]) -> str:
    """The summary people read: what was written, how fast, and the scores where there was ground truth."""
    done = [r for r in result["volumes"] if not r.get("skipped")]
    skipped = len(result["volumes"]) - len(done)
    solved = any("solver_iterations" in r for r in done)

    def row(r: dict[str, Any]) -> str:
        cells = f"| {r['volume']} | {r['slices']} | {r['seconds']:.2f} | {r['slices'] / r['seconds']:.1f} |"
        return cells + (f" {np.mean(r['solver_iterations']):.1f} |" if solved else "")

    start = "each slice started from the previous one's solution" if result.get("warm_start") else "cold starts"
    lines = [
        f"Reconstructed {len(done)} volume(s) into {result['folder']} "
        f"({'pruned' if result['pruned'] else 'dense'} network, {result['device']}"
        + (f"; {skipped} written before, skipped" if skipped else "")
        + ")",
        "",
        "| volume | slices | seconds | slices/s |" + (f" solver iterations per slice ({start}) |" if solved else ""),
        "|---|---:|---:|---:|" + ("---:|" if solved else ""),
        *[row(r) for r in done],
        "",
        f"Total: {result['slices']} slices in {result['seconds']:.1f} s, **{result['slices_per_s']:.1f} slices/s** "
        f"(median {result['median_s_per_volume']:.2f} s per volume).",
    ]
    if metrics := result.get("metrics"):
        mean = metrics["mean"]
        lines += [
            "",
            f"Scored ({metrics['convention']} convention) on the {len(metrics['per_volume'])} fully sampled volume(s): "
            f"PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f} (zero-filled {mean['zf_psnr']:.2f} / "
            f"{mean['zf_ssim']:.4f}).",
        ]
    return "\n".join(lines) + "\n"
