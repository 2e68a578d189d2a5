"""Time one fastmri U-Net per width in both memory layouts (what benchmark.memory_format=auto chooses between).

    python experiments/unet_layout_timing.py SIZE POOLS CHANS[,CHANS...]

Batch 1, 2 input channels (a complex image), 2 threads, median of 7 after 2 warm-up calls, no gradients.
"""

from __future__ import annotations

import sys

import torch
from fastmri.models.unet import Unet

from spade_pl.benchmark.timing import median_seconds


def main(size: str, pools: str, chans: str) -> None:
    torch.set_num_threads(2)
    for layout in (torch.contiguous_format, torch.channels_last):
        for width in (int(c) for c in chans.split(",")):
            net = Unet(2, 2, width, int(pools)).eval().to(memory_format=layout)
            x = torch.randn(1, 2, int(size), int(size)).contiguous(memory_format=layout)
            with torch.no_grad():
                ms = median_seconds(lambda net=net, x=x: net(x), repeats=7, warmup=2) * 1000
            name = "channels_last" if layout == torch.channels_last else "contiguous"
            print(f"{name} chans={width} size={size}: {ms:.2f} ms", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
