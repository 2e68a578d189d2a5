"""Peak memory of ``stage=test`` at two test-split sizes: fastMRI-layout volumes (8 slices of 256 x 256 recon
size, readout oversampled 2x, 4 coils), 4 and 40 of them, scored by the default E2E-VarNet (random weights: the
memory of a pass does not depend on them).

    .venv/bin/python experiments/test_split_memory.py experiments/results/memory_test_split

Prints and writes ``memory.json`` / ``memory.md`` into the folder given: the peak resident memory of each
``python -m spade_pl stage=test`` process and the difference, which a pass that kept its images would grow by
about 2.6 MB a slice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from spade_pl.__main__ import config_dir
from spade_pl.data.mri.hdf5 import ismrmrd_header

SLICES, COILS, SIZE = 8, 4, 256


def volume(path: Path) -> None:
    rng = np.random.default_rng(0)
    shape = (SLICES, COILS, 2 * SIZE, SIZE)
    with h5py.File(path, "w") as hf:
        hf["kspace"] = ((rng.normal(size=shape) + 1j * rng.normal(size=shape)) * 1e-4).astype(np.complex64)
        hf["reconstruction_rss"] = rng.random((SLICES, SIZE, SIZE)).astype(np.float32)
        hf["ismrmrd_header"] = ismrmrd_header(2 * SIZE, SIZE, recon_size=(SIZE, SIZE))
        hf.attrs["max"] = 1.0


def peak_mb(args: list[str], cwd: Path) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "spade_pl", *args], cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"stage=test failed: {args}"
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="split-memory-"))
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        model = compose("config").network.model
    ckpt = work / "dense.pt"
    torch.save(instantiate(model).state_dict(), ckpt)
    rows = {}
    for count in (4, 40):
        root = work / f"data{count}"
        for split in ("train", "val", "test"):
            (root / split).mkdir(parents=True)
        source = work / "volume.h5.src"
        if not source.exists():
            volume(source)
        for split in ("train", "val"):
            (root / split / "v.h5").symlink_to(source)
        for i in range(count):
            (root / "test" / f"v{i:02d}.h5").symlink_to(source)
        args = ["stage=test", f"ckpt_path={ckpt}", "data=fastmri", f"data.root={root}", "data.num_workers=0"]
        peak, seconds = peak_mb([*args, f"hydra.run.dir={work / f'run{count}'}"], work)
        rows[count] = {"volumes": count, "slices": count * SLICES, "peak_mb": peak, "wall_s": seconds}
    growth = rows[40]["peak_mb"] - rows[4]["peak_mb"]
    result = {"recon_size": SIZE, "coils": COILS, "runs": list(rows.values()), "growth_mb": growth}
    print(f"data and checkpoint in {work}")
    lines = [
        f"stage=test peak memory, fastMRI-layout volumes of {SLICES} slices ({SIZE} x {SIZE}, {COILS} coils)",
        "",
        "| test volumes | slices | peak RSS (MB) | wall (s) |",
        "|---:|---:|---:|---:|",
        *[f"| {r['volumes']} | {r['slices']} | {r['peak_mb']:.0f} | {r['wall_s']:.0f} |" for r in rows.values()],
        "",
        f"Growth from 4 to 40 volumes: {growth:+.0f} MB (images kept to the end of the pass would add about "
        f"{(rows[40]['slices'] - rows[4]['slices']) * 3 * SIZE * SIZE * 4 / 2**20:.0f} MB).",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result, indent=2))
    (out / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
