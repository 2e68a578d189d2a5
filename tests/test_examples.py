"""What the docs' "extending" page promises: a new inverse problem (physics, data, config) and a new fine-tuning
strategy (a config of terms) live outside the package, found through Hydra's search path and PYTHONPATH, and
run the whole job (pretrain, prune, fine-tune, test, benchmark, report)."""

import json
import os
from pathlib import Path

from conftest import TINY_NETWORKS, TINY_SR_DATA, spade_cli, tiny_overrides

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = ["debug=limit", "benchmark.repeats=1", "benchmark.warmup=0"]


def test_a_strategy_written_as_a_config_of_terms_runs_the_whole_job(tmp_path):
    proc = spade_cli(
        f"hydra.searchpath=[file://{EXAMPLES / 'conf'}]",
        "finetune=distill_ei",
        "prune.ratio=0.5",
        *tiny_overrides(),
        *FAST,
        cwd=tmp_path,
        cache=tmp_path / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = (tmp_path / "logs").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert results["strategy"] == "distill_ei" and results["finetuned_model"] == "pruned + distill + EI"
    assert list(results["models"]) == ["zero-filled", "dense", "pruned (one-shot)", "pruned + distill + EI"]
    bench = results["benchmark"]
    assert bench["pruned"]["params"] < bench["dense"]["params"] and bench["mac_bound_forward"] > 1
    assert results["cost"]["finetune-distill_ei"]["epochs"] == 1
    (metrics,) = results_file.parent.glob("csv/finetune-distill_ei/metrics.csv")
    header = metrics.read_text().splitlines()[0]
    assert "val/distill" in header and "val/ei" in header  # each term logged under its name


def test_a_problem_of_your_own_runs_the_whole_job_self_supervised_too(tmp_path):
    """Image inpainting (examples/inpainting.py, examples/conf): the DEQ pre-trained, pruned and fine-tuned
    without ground truth (the mask splits, EI), tested against the measured pixels, benchmarked."""
    path = os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))
    proc = spade_cli(
        f"hydra.searchpath=[file://{EXAMPLES / 'conf'}]",
        "problem=inpainting",
        "finetune=selfsup",
        "prune.ratio=0.5",
        *TINY_SR_DATA,
        *TINY_NETWORKS["deq_sr"],
        *FAST,
        cwd=tmp_path,
        cache=tmp_path / "cache",
        env={"PYTHONPATH": path},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = (tmp_path / "logs").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert list(results["models"]) == ["measured pixels", "dense", "pruned (one-shot)", "pruned + selfsup"]
    assert all(m["mean"]["psnr"] > 0 for m in results["models"].values())
    assert results["benchmark"]["mac_bound_forward"] > 1 and results["pruning"]["prior"]["widths_after"]


def test_the_package_knows_nothing_of_the_examples():
    """The examples extend spade-pl from outside: no module or config setting of the package names them, so a
    user's problem or strategy needs no edit to the spine (what the extending page promises). Config comments
    may show them as usage."""
    root = EXAMPLES.parent
    names = ["inpainting", "distill_ei", "dncnn", "custom_network"]

    def code(path: Path) -> str:
        lines = path.read_text().lower().splitlines()
        return "\n".join(line.split("#")[0] for line in lines) if path.suffix == ".yaml" else "\n".join(lines)

    spine = [*(root / "src" / "spade_pl").rglob("*.py"), *(root / "conf").rglob("*.yaml")]
    mentions = [f"{p.relative_to(root)}: {n}" for p in spine for n in names if n in code(p)]
    assert not mentions, mentions
