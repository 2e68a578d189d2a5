"""spade-pl as users install it: a wheel that carries its Hydra configs and runs from any folder, a user's own
config folder joining through ``hydra.searchpath``, and a missing fastmri said in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
TINY_BENCHMARK = ["stage=benchmark", "benchmark.repeats=1", "benchmark.warmup=0", "benchmark.volume=false"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed (without its dependencies, which this venv has) into a
    folder of its own: what ``pip install .`` puts in a user's environment."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"  # the checkout's files alone: no build folder left from an earlier build
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(folder / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (folder / "dist").glob("spade_pl-*.whl")
    target = folder / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return target


def in_wheel(target: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``spade-pl ARGS`` (the installed console script) in ``cwd``, outside the checkout."""
    cwd.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONPATH": str(target), "WANDB_SILENT": "true", **env}
    command = [sys.executable, str(target / "bin" / "spade-pl"), *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_every_config_and_the_license(installed):
    shipped = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    packaged = {p.relative_to(installed / "spade_pl" / "conf").as_posix() for p in installed.rglob("conf/**/*.yaml")}
    assert packaged == shipped
    (info,) = installed.glob("spade_pl-*.dist-info")
    assert any("LICENSE" in p.name for p in info.rglob("*"))


@pytest.mark.slow
def test_the_installed_package_runs_a_job_from_any_folder(installed, tmp_path):
    work = tmp_path / "elsewhere"
    done = in_wheel(installed, *TINY_BENCHMARK, *tiny_overrides(), cwd=work, SPADE_PL_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = (work / "logs").rglob("benchmark.json")
    assert json.loads(result.read_text())["speedup_forward"] > 0.1
    probe = [sys.executable, "-c", "import spade_pl; print(spade_pl.__file__)"]
    where = subprocess.run(probe, cwd=work, env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True)
    assert where.stdout.decode().startswith(str(installed))  # the wheel's copy ran, not the checkout's


@pytest.mark.slow
def test_a_network_config_of_your_own_joins_through_hydra_searchpath(installed, tmp_path):
    own = tmp_path / "my_configs" / "network"
    own.mkdir(parents=True)
    (own / "my_deq.yaml").write_text(
        "defaults:\n  - deq\n  - _self_\nmodel:\n  feats: 6\n  num_blocks: 1\n  max_iter: 5\n"
    )
    args = [
        f"hydra.searchpath=[file://{own.parent}]",
        "network=my_deq",
        *TINY_BENCHMARK,
        *tiny_overrides(("network=my_deq",)),
    ]
    done = in_wheel(installed, *args, cwd=tmp_path / "run", SPADE_PL_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    (config,) = (tmp_path / "run" / "logs").rglob(".hydra/config.yaml")
    text = config.read_text()
    assert "_target_: spade_pl.models.DEQ" in text and "feats: 6" in text


def test_without_fastmri_the_command_line_says_how_to_install_it(tmp_path):
    blocker = tmp_path / "sitecustomize.py"  # imported at start-up: makes fastmri unimportable
    blocker.write_text("import sys\nsys.modules['fastmri'] = None\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "spade_pl", "stage=test"], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "error: fastmri is not installed; install it without its torchvision requirement: "
        "pip install --no-deps fastmri==0.3.0"
    )
