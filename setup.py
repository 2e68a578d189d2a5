"""Packaging: the metadata is in pyproject.toml; this adds what a static table cannot say: the Hydra configs,
which live in ``conf/`` at the repository's top, ship inside the package as ``spade_pl/conf/`` (one package per
config folder, so that a wheel carries every ``*.yaml``)."""

from pathlib import Path

from setuptools import find_packages, setup

CONF = Path("conf")
config_packages = {
    ".".join(["spade_pl", "conf", *folder.relative_to(CONF).parts]): folder.as_posix()
    for folder in [CONF, *sorted(p for p in CONF.rglob("*") if p.is_dir())]
}

setup(
    packages=[*find_packages("src"), *config_packages],
    package_dir={"": "src", **config_packages},
    package_data={name: ["*.yaml"] for name in config_packages},
)
