"""The front page and the documentation site: the strict build, the README's shape, no history or machine
remarks, and every `python -m spade_pl` command they show composes into a valid config."""

import errno
import os
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
SOURCES = sorted((ROOT / "src").rglob("*.py"))
# history and machine remarks belong in experiments/LOG.md: commit hashes (hex with a digit and a letter),
# issue numbers, and the machine or session something was measured on (a dotted config key such as ONNX
# Runtime's `session.intra_op...` is not a remark)
FORBIDDEN = re.compile(
    r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b|\b[Ii]ssues? \d+|#\d+\b|this machine|\bsessions?\b(?!\.)"
)
# comments and docstrings say why in the present: no narrated history, no particular device or guide
NARRATION = re.compile(r"\bH[12]00\b|GUIDE\.md|\bas before\b|measured here|\bolder\b|\bno longer\b|\bformerly\b")


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


@pytest.mark.parametrize("path", [README, *PAGES, *CONFIGS, *SOURCES], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_commit_hashes_issue_numbers_or_machine_remarks(path):
    text = path.read_text()
    found = [m.group(0) for m in FORBIDDEN.finditer(text)]
    if path.suffix in (".py", ".yaml"):
        found += [m.group(0) for m in NARRATION.finditer(text)]
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


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch):
    """The page's example (prune, fine-tune with Lightning, save, rebuild) runs in a fresh interpreter as shown."""
    page = (ROOT / "docs" / "python-api.md").read_text()
    example = max(re.findall(r"```python\n(.*?)```", page, flags=re.S), key=len)
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"parameters: [\d,]+ -> [\d,]+", done.stdout)
    assert (tmp_path / "pruned.pt").is_file()


def test_the_public_names_import_from_the_package_without_loading_torch():
    code = (
        "import sys, spade_pl; assert 'torch' not in sys.modules; "
        "from spade_pl import MBDLNetwork, PruneSettings, prune_network, synthetic_mri_batch, ReconModule; "
        "assert all(getattr(spade_pl, n) is not None for n in spade_pl.__all__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def source_strings() -> str:
    """Every string literal of the package (an f-string's fixed parts, a formatted value as a line break), so
    that a message's fixed words can be looked up whatever the line breaks of the source."""
    import ast

    parts = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                parts.append("\n".join(v.value if isinstance(v, ast.Constant) else "" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts.append(node.value)
    return "\n".join(parts)


def fixed_words(message: str) -> list[str]:
    """Runs of three or more words of ``message`` that no value fills in (placeholders such as F or ...,
    ``key=value`` pairs, numbers, quoted names and class names break a run)."""
    runs, current = [], []
    for word in message.split():
        bare = word.rstrip(",;:.")
        if "..." in word or re.search(r"^[A-Z]$|[=\d'\"()/<>_]|\w\.\w|^[A-Z][a-z]+[A-Z]|^(nan|inf)$", bare):
            runs.append(current)
            current = []
        else:
            current.append(word)
    return [" ".join(run) for run in [*runs, current] if len(run) >= 3]


def test_the_messages_troubleshooting_quotes_are_the_ones_the_code_prints():
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    quoted = re.findall(r"^\| `([^`]+)` \|", page, flags=re.M)
    assert len(quoted) >= 8
    strings = source_strings() + "\n".join(os.strerror(code) for code in errno.errorcode)  # the OS's own words

    def printed(run: str) -> bool:  # whole, or in pieces of two words or more with values filled in between
        words = run.split()
        reachable = {0}
        for end in range(2, len(words) + 1):
            if any(end - start >= 2 and " ".join(words[start:end]).strip(",;:") in strings for start in reachable):
                reachable.add(end)
        return len(words) in reachable

    stale = [(message, run) for message in quoted for run in fixed_words(message) if not printed(run)]
    assert not stale, stale
