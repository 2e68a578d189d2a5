"""results.json's schema: a version and a roles map that code reads instead of labels or positions; files written
before roles existed read the same."""

from __future__ import annotations

import json
from pathlib import Path

from spade_pl.reporting.results import (
    BASELINE,
    DENSE,
    FINETUNED,
    ONE_SHOT,
    SCHEMA_VERSION,
    final_role,
    models_by_role,
    roles_of,
    summary_record,
)
from spade_pl.reporting.summary import run_summary

COMMITTED = Path(__file__).resolve().parents[1] / "experiments" / "results" / "demo_deq" / "results.json"


def test_a_file_without_roles_reads_by_the_labels_it_was_written_with():
    results = json.loads(COMMITTED.read_text())
    assert "roles" not in results
    assert roles_of(results) == {
        BASELINE: "zero-filled",
        DENSE: "dense",
        ONE_SHOT: "pruned (one-shot)",
        FINETUNED: "pruned + distill",
    }
    assert final_role(results) == FINETUNED


def test_roles_not_labels_decide_what_code_reads():
    """Relabel every model and reorder them: the summary and the record still find dense and the fine-tuned one."""
    results = json.loads(COMMITTED.read_text())
    labels = {"zero-filled": "ZF", "dense": "teacher", "pruned (one-shot)": "cut", "pruned + distill": "student"}
    renamed = dict(reversed([(labels[k], v) for k, v in results["models"].items()]))
    relabelled = {
        **results,
        "models": renamed,
        "roles": {BASELINE: "ZF", DENSE: "teacher", ONE_SHOT: "cut", FINETUNED: "student"},
        "finetuned_model": "student",
        "schema_version": SCHEMA_VERSION,
    }
    assert models_by_role(relabelled)[FINETUNED] == results["models"]["pruned + distill"]
    assert run_summary(relabelled)["model"] == "student"
    assert run_summary(relabelled)["psnr"]["delta"] == run_summary(results)["psnr"]["delta"]
    record, before = summary_record(relabelled), summary_record(results)
    for key in ("dense/psnr", "finetuned/psnr", "one_shot/psnr", "baseline/psnr", "finetuned/delta_psnr"):
        assert record[key] == before[key]


def test_a_job_writes_its_schema_version_and_roles(make_cfg, tmp_path, pretrained):
    from spade_pl.job.pipeline import run

    dense = pretrained("debug=fdr")
    out = run(make_cfg("stage=prune", f"ckpt_path={dense}", "debug=fdr"))
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION == out["schema_version"]
    assert written["roles"] == {BASELINE: "zero-filled", DENSE: "dense", ONE_SHOT: "pruned (one-shot)"}
    assert set(written["roles"].values()) == set(written["models"])
