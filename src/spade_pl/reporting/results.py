"""The results schema: what ``results.json`` holds, and the roles its models play.

A job scores several models, each under a display label ("dense", "pruned (one-shot)", "pruned + distill", the
problem's "zero-filled" or "bicubic"). ``models`` keeps them by label (what people and other tools read);
``roles`` maps each role to its label, so that code finds "the fine-tuned model" by role, never by parsing a
label or by position. Files written before ``roles`` existed are read by the labels they used
(:func:`roles_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spade_pl.reporting.volume_scores import ITERATIONS_KEY

#: results.json's layout version: 2 added ``roles``
SCHEMA_VERSION = 2
#: the roles a scored model plays in a job
BASELINE, DENSE, ONE_SHOT, FINETUNED, MODEL = "baseline", "dense", "one_shot", "finetuned", "model"
#: the label each role's model has in ``models`` (baseline and fine-tuned are named by the problem and recipe)
LABELS = {DENSE: "dense", ONE_SHOT: "pruned (one-shot)", MODEL: "model"}
BENCHMARK_KEYS = ("speedup_forward", "speedup_priors", "mac_bound_forward", "measured_over_bound")


def roles_of(results: Mapping[str, Any]) -> dict[str, str]:
    """Role -> label of ``results``' models: its ``roles``, or, for a file written without them, the labels
    the jobs used (the problem's baseline first, the fine-tuned model as ``finetuned_model`` names it, or the
    model written after the others where that key is missing too)."""
    if "roles" in results:
        return dict(results["roles"])
    labels = list(results.get("models", {}))
    roles = {BASELINE: labels[0]} if labels else {}
    roles |= {role: label for role, label in LABELS.items() if label in labels}
    named = set(roles.values())
    others = [label for label in labels if label not in named]  # the fine-tuned model, written last
    finetuned = results.get("finetuned_model") or (others[-1] if others else None)
    if finetuned in labels:
        roles[FINETUNED] = finetuned
    return roles


def models_by_role(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Role -> that model's entry (its ``mean`` and per-volume metrics)."""
    return {role: results["models"][label] for role, label in roles_of(results).items()}


def final_role(results: Mapping[str, Any]) -> str | None:
    """The pruned model a job ends with: the fine-tuned one, else the one-shot prune (None: it pruned none)."""
    roles = roles_of(results)
    return next((role for role in (FINETUNED, ONE_SHOT) if role in roles), None)


def summary_record(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one job as flat keys: ``dense/psnr``, ``finetuned/delta_psnr``, ``speedup_forward``...

    Models are named by role, not by strategy, so records of a sweep line up in one table or scatter plot.
    """
    finetuned = results.get("finetuned_model")  # results.json names its fine-tuned model and its strategy
    strategy = results.get("strategy", "none")
    prune = results.get("prune", {})
    record: dict[str, Any] = {"ratio": prune.get("ratio"), "strategy": strategy}
    if prune.get("depth"):  # stages removed too: a column of its own in a sweep's table
        record["depth"] = prune["depth"]
    if "seed" in results:
        record["seed"] = results["seed"]
        record["setting"] = " ".join(sorted(o for o in results.get("overrides", []) if not o.startswith("seed=")))
    if finetuned:
        record["finetuned_label"] = finetuned
    if transfer := results.get("transfer"):  # scored on other measurements than trained on: says so in every row
        record["scored_on"] = " ".join(f"{k}={v}" for k, v in transfer.get("eval_mask", transfer).items())
    models = models_by_role(results)
    dense_psnr = models.get(DENSE, {}).get("mean", {}).get("psnr")
    for role, entry in models.items():
        record[f"{role}/psnr"] = entry["mean"]["psnr"]
        record[f"{role}/ssim"] = entry["mean"]["ssim"]
        if ITERATIONS_KEY in entry["mean"]:
            record[f"{role}/{ITERATIONS_KEY}"] = entry["mean"][ITERATIONS_KEY]
        if dense_psnr is not None and role != DENSE:
            record[f"{role}/delta_psnr"] = entry["mean"]["psnr"] - dense_psnr
    bench = results.get("benchmark")
    if bench:
        record.update({key: bench[key] for key in BENCHMARK_KEYS})
        for model in ("dense", "pruned"):
            record[f"{model}/params"] = bench[model]["params"]
            record[f"{model}/macs_forward"] = bench[model]["macs_forward"]
            record[f"{model}/forward_ms"] = bench[model]["forward_ms"]
            if "peak_forward_bytes" in bench[model]:  # benchmarks written before memory was measured lack it
                record[f"{model}/peak_forward_mib"] = bench[model]["peak_forward_bytes"] / 2**20
        if "memory_ratio" in bench:
            record["memory_ratio"] = bench["memory_ratio"]
    return record
