"""experiments/structures.py: the width-vs-depth table that docs/results.md quotes, collected from committed jobs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "experiments" / "structures.py"
GRID = ROOT / "experiments" / "results" / "structures_e2e"


def collect(tmp_path: Path, *folders: Path) -> str:
    out = tmp_path / "collected"
    args = [sys.executable, str(SCRIPT), *map(str, folders), "--out", str(out)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (out / "structures.csv").exists() and (out / "structures.png").exists()
    return (out / "structures.md").read_text()


def test_the_committed_grid_collects_to_the_committed_table(tmp_path):
    committed = (ROOT / "experiments" / "results" / "structures_e2e_collected" / "structures.md").read_text()
    assert collect(tmp_path, GRID) == committed


def test_jobs_with_a_contractivity_weight_are_rows_of_their_own(tmp_path):
    """The same structure and seeds fine-tuned with and without the term are two rows, and the table names the
    weight."""
    plain, weighted = tmp_path / "plain", tmp_path / "weighted"
    for job in ("0", "6"):  # seed 42 and seed 1 of width 0.27
        shutil.copytree(GRID / job, plain / job)
        shutil.copytree(GRID / job, weighted / job)
        config = OmegaConf.load(weighted / job / "config.yaml")
        config.finetune.contractivity_weight = 0.1
        OmegaConf.save(config, weighted / job / "config.yaml")
    table = collect(tmp_path, plain, weighted).splitlines()
    assert "| contractivity |" in table[0]
    rows = [line.split(" | ") for line in table[2:]]
    assert [row[3] for row in rows] == ["0", "0.1"]
    assert rows[0][4:] == rows[1][4:]  # the same jobs' numbers otherwise
