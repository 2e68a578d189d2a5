"""The closing summary of a SPADE job: dense against the final pruned model in a few lines a newcomer reads
at a glance (quality, size, compute, measured speed-up per slice and per volume, and where the speed-up is
capped), built from the run's results so that it can never disagree with results.json."""

from __future__ import annotations

from typing import Any

from spade_pl.benchmark.macs import speedup_cap, speedup_cap_line
from spade_pl.benchmark.table import volume_count
from spade_pl.reporting.results import DENSE, final_role, roles_of


def run_summary(results: dict[str, Any]) -> dict[str, Any] | None:
    """Dense vs the pruned model the job ends with (the fine-tuned one, else the one-shot prune) and the
    benchmark; None when the run lacks either (a single-model test, a run that pruned nothing)."""
    bench, roles, final_role_name = results.get("benchmark"), roles_of(results), final_role(results)
    if DENSE not in roles or final_role_name is None or bench is None:
        return None
    final_name = roles[final_role_name]
    dense, final = results["models"][roles[DENSE]]["mean"], results["models"][final_name]["mean"]
    summary: dict[str, Any] = {
        "model": final_name,
        "split": results.get("split", "test"),
        "num_volumes": results.get("num_volumes"),
        "psnr": {DENSE: dense["psnr"], final_name: final["psnr"], "delta": final["psnr"] - dense["psnr"]},
        "ssim": {DENSE: dense["ssim"], final_name: final["ssim"], "delta": final["ssim"] - dense["ssim"]},
        "params": {DENSE: bench["dense"]["params"], final_name: bench["pruned"]["params"]},
        "macs_forward": {DENSE: bench["dense"]["macs_forward"], final_name: bench["pruned"]["macs_forward"]},
        "mac_bound": bench["mac_bound_forward"],
        "measured_over_bound": bench["measured_over_bound"],
        "device": bench["device"],
        "per_slice": {
            DENSE: bench["dense"]["ms_per_slice"],
            final_name: bench["pruned"]["ms_per_slice"],
            "speedup": bench["speedup_forward"],
        },
    }
    if volume := bench.get("volume"):
        summary["per_volume"] = {
            DENSE: volume["dense_ms"],
            final_name: volume["pruned_ms"],
            "speedup": volume["speedup"],
            "slices": volume["slices"],
        }
    if cap := speedup_cap(bench):
        summary["cap"] = {**cap, "line": speedup_cap_line(bench)}
    return summary


def _macs(macs: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if macs >= scale:
            return f"{macs / scale:.2f} {unit}"
    return str(macs)


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as a small markdown table and the cap line (printed last by the main job)."""
    name = summary["model"]
    psnr, ssim, params, macs = summary["psnr"], summary["ssim"], summary["params"], summary["macs_forward"]
    per_slice, volumes = summary["per_slice"], summary["num_volumes"]
    rows = [
        ("PSNR (dB)", f"{psnr[DENSE]:.2f}", f"{psnr[name]:.2f}", f"{psnr['delta']:+.2f} dB"),
        ("SSIM", f"{ssim[DENSE]:.4f}", f"{ssim[name]:.4f}", f"{ssim['delta']:+.4f}"),
        ("parameters", f"{params[DENSE]:,}", f"{params[name]:,}", f"{params[name] / params[DENSE]:.1%}"),
        ("MACs per forward", _macs(macs[DENSE]), _macs(macs[name]), f"bound {summary['mac_bound']:.2f}x"),
        (
            "time per slice (latency)",
            f"{per_slice[DENSE]:.1f} ms",
            f"{per_slice[name]:.1f} ms",
            f"**{per_slice['speedup']:.2f}x**",
        ),
    ]
    if volume := summary.get("per_volume"):
        rows.append(
            (
                f"time per volume ({volume_count(volume)}{volume['slices']} slices in one batch: throughput)",
                f"{volume[DENSE]:.1f} ms",
                f"{volume[name]:.1f} ms",
                f"**{volume['speedup']:.2f}x**",
            )
        )
    lines = [
        f"## Summary: dense vs {name} ({summary['split']} split, {volumes} volume{'s' * (volumes != 1)}; "
        f"timed on {summary['device']})",
        "",
        f"| | dense | {name} | change |",
        "|---|---:|---:|---:|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    lines += [
        "",
        f"Measured {per_slice['speedup']:.2f}x per slice = {summary['measured_over_bound']:.0%} of the MAC bound "
        f"{summary['mac_bound']:.2f}x; the rest is time MACs do not count (narrow layers below their MAC rate, "
        "elementwise and memory-bound work).",
    ]
    if cap := summary.get("cap"):
        lines.append(cap["line"])
    return "\n".join(lines) + "\n"
