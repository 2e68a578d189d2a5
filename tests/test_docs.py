"""The front page and the documentation site: the strict build, the README's shape, no history or machine
remarks, and every `python -m spade_pl` command they show composes into a valid config."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from spade_pl.__main__ import config_dir
from spade_pl.job.preflight import check_config
from spade_pl.pruning.settings import PruneSettings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
CONFIGS = sorted((ROOT / "conf").rglob("*.yaml"))
# history and machine remarks belong in experiments/LOG.md: commit hashes (hex with a digit and a letter),
# issue numbers, and the machine or session something was measured on
FORBIDDEN = re.compile(
    r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b|\b[Ii]ssues? \d+|#\d+\b|this machine|\bsessions?\b"
)


def test_mkdocs_builds_strictly(tmp_path):
    """A broken link, a missing page in the nav or an API object that does not exist fails the build."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(mkdocs.parent)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "models" / "index.html").read_text().count("MBDLNetwork") > 1


def test_the_readme_is_a_front_page_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    two = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = two.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make demo", "make test"]


@pytest.mark.parametrize("path", [README, *PAGES, *CONFIGS], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_commit_hashes_issue_numbers_or_machine_remarks(path):
    found = [m.group(0) for m in FORBIDDEN.finditer(path.read_text())]
    assert not found, f"{path.relative_to(ROOT)}: {found}"


def shown_commands() -> list[tuple[str, list[str]]]:
    """Every ``python -m spade_pl ...`` line of a bash block in README and docs, continuations joined."""
    commands = []
    for path in [README, *PAGES]:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                while words and re.match(r"^[A-Z_]+=", words[0]):  # PYTHONPATH=examples ...
                    words.pop(0)
                if words[:3] == ["python", "-m", "spade_pl"]:
                    commands.append((f"{path.relative_to(ROOT)}: {line.strip()}", words[3:]))
    return commands


def single_job(overrides: list[str]) -> list[str]:
    """A sweep's first job: ``-m`` dropped, each sweep (Hydra's own parser: ``a,b``, ``[4],[8]``) cut to its first
    choice."""
    parser = OverridesParser.create()
    first = []
    for override in (re.sub(r"<[^>]*>", "X", o) for o in overrides if o != "-m"):  # placeholders such as <date>
        parsed = parser.parse_override(override)
        if parsed.is_sweep_override():
            choice = next(parsed.sweep_string_iterator())
            override = f"{parsed.get_key_element()}={choice}"
        first.append(override)
    return first


COMMANDS = shown_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 30  # the parser finds them (a broken one would make the test below vacuous)


@pytest.mark.parametrize("overrides", [c[1] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_every_shown_command_composes_into_a_valid_config(overrides, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # what the commands' PYTHONPATH=examples gives them
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=single_job(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.resolve(cfg.network)
    check_config(cfg)
    PruneSettings.from_config(cfg.prune)
