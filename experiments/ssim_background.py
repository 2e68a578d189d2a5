"""Where two checkpoints' SSIM differs: foreground vs background of the reference (diagnosis, validation split).

    python experiments/ssim_background.py DENSE.ckpt PRUNED.ckpt [hydra overrides, e.g. paths.cache_dir=...]

For each validation volume: fastMRI PSNR/SSIM of both models, their mean output in the background (pixels
below 10 % of the volume maximum) as a fraction of that maximum, and the mean SSIM map (7 x 7, the fastMRI
window) over foreground and background of the middle slice. Reads the ground truth of the validation split
only (eval_split=val), never the test split.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from fastmri import evaluate
from skimage.metrics import structural_similarity
from validation_run import validation_run


def magnitudes(network, batch) -> np.ndarray:
    return batch.image(network.eval()(batch.y, batch.physics())).squeeze(0).numpy()


def main(dense_ckpt: str, pruned_ckpt: str, *overrides: str) -> None:
    run = validation_run(list(overrides), "ssim_background_")
    networks = {"dense": run.networks.load(dense_ckpt)[0], "pruned": run.networks.load(pruned_ckpt)[0]}
    volumes: dict[str, dict[str, list[np.ndarray]]] = {}
    with torch.no_grad():
        for batch in run.datamodule.test_dataloader():  # the evaluation split: val
            slices = volumes.setdefault(batch.fname[0], {"target": []})
            slices["target"].append(batch.target.squeeze(0).numpy())
            for name, network in networks.items():
                slices.setdefault(name, []).append(magnitudes(network, batch))
    print("| volume | model | PSNR | SSIM | background mean / max (target) | SSIM foreground | SSIM background |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for fname, slices in volumes.items():
        target = np.stack(slices["target"])
        peak, middle = target.max(), len(target) // 2
        background = target < 0.1 * peak
        for name in networks:
            output = np.stack(slices[name])
            _, ssim_map = structural_similarity(target[middle], output[middle], data_range=peak, win_size=7, full=True)
            psnr, ssim = evaluate.psnr(target, output), np.mean(evaluate.ssim(target, output))
            print(
                f"| {fname} | {name} | {psnr:.2f} | {ssim:.4f} | "
                f"{output[background].mean() / peak:.4f} ({target[background].mean() / peak:.4f}) | "
                f"{ssim_map[~background[middle]].mean():.3f} | {ssim_map[background[middle]].mean():.3f} |"
            )


if __name__ == "__main__":
    main(*sys.argv[1:])
