"""The benchmark as a markdown table (benchmark.md, the run's report and the terminal)."""

from __future__ import annotations

from typing import Any

from spade_pl.benchmark.macs import speedup_cap_line


def benchmark_markdown(result: dict[str, Any]) -> str:
    """benchmark.json's result as the table people read: dense, pruned and the ratio of each row."""
    d, p = result["dense"], result["pruned"]
    slices, threads = result.get("slices", 1), result["threads"]
    rows = [
        (
            f"whole forward ({slices} slice{'s' * (slices > 1)}), median ms",
            f"{d['forward_ms']:.1f}",
            f"{p['forward_ms']:.1f}",
            f"{result['speedup_forward']:.2f}x",
        ),
        (
            "priors only, median ms",
            f"{d['priors_ms']:.1f}",
            f"{p['priors_ms']:.1f}",
            f"{result['speedup_priors']:.2f}x",
        ),
        ("parameters (network)", f"{d['params']:,}", f"{p['params']:,}", f"{p['params'] / d['params']:.1%}"),
        (
            "parameters (priors)",
            f"{d['prior_params']:,}",
            f"{p['prior_params']:,}",
            f"{p['prior_params'] / d['prior_params']:.1%}",
        ),
        (
            "MACs, whole forward",
            f"{d['macs_forward']:,}",
            f"{p['macs_forward']:,}",
            f"bound {result['mac_bound_forward']:.2f}x",
        ),
    ]
    if "peak_forward_bytes" in d:
        rows += [
            (
                "peak memory per forward (eager; activations and output), MiB",
                f"{d['peak_forward_bytes'] / 2**20:.1f}",
                f"{p['peak_forward_bytes'] / 2**20:.1f}",
                f"{p['peak_forward_bytes'] / max(d['peak_forward_bytes'], 1):.1%}",
            ),
            (
                "weights, MiB",
                f"{d['weight_bytes'] / 2**20:.2f}",
                f"{p['weight_bytes'] / 2**20:.2f}",
                f"{p['weight_bytes'] / d['weight_bytes']:.1%}",
            ),
        ]
    for name, a in d["macs_per_prior_call"].items():
        b = p["macs_per_prior_call"].get(name)  # None: removed with its stage (prune.depth)
        rows.append(
            (
                f"MACs per call, {name}",
                f"{a:,}",
                "removed" if b is None else f"{b:,}",
                "" if b is None else f"{a / b:.2f}x",
            )
        )
    if volume := result.get("volume"):
        how = (
            "slices one by one in order, each from the previous one's solution"
            if volume.get("in_order")
            else "slices in one forward"
        )
        rows.insert(
            1,
            (
                f"whole test volumes ({volume_count(volume)}{volume['slices']} {how}, "
                f"{volume['repeats']} repetitions), median ms",
                f"{volume['dense_ms']:.1f}",
                f"{volume['pruned_ms']:.1f}",
                f"{volume['speedup']:.2f}x",
            ),
        )
        if per_slice := volume.get("iterations_per_slice"):
            rows.insert(
                2,
                (
                    "solver iterations per slice, whole test volumes (mean)",
                    f"{per_slice['dense']:.1f}",
                    f"{per_slice['pruned']:.1f}",
                    "",
                ),
            )
    if "memory_format" in d:

        def layout(chosen: dict[str, Any]) -> str:
            timed = ", ".join(f"{name} {ms:.1f} ms" for name, ms in chosen.get("candidates_ms", {}).items())
            return f"{chosen['chosen']} ({timed})" if timed else chosen["chosen"]

        rows.append(("priors' memory format", layout(d["memory_format"]), layout(p["memory_format"]), ""))
    if "solver_iterations" in d:

        def spread(it: dict[str, float]) -> str:
            return f"{it['median']:g} (min {it['min']:g}, max {it['max']:g})"

        rows.append(
            ("solver iterations per forward", spread(d["solver_iterations"]), spread(p["solver_iterations"]), "")
        )
    if "runtime" in d:

        def prepared(info: dict[str, Any]) -> str:
            if "prepare_s" not in info:  # eager: the reference itself
                return info["runtime"]
            return f"{info['runtime']} (prepared in {info['prepare_s']:.1f} s; {info['relative_difference']:.0e})"

        rows.append(
            ("runtime (output vs eager: max relative difference)", prepared(d["runtime"]), prepared(p["runtime"]), "")
        )
    lines = [
        f"Benchmark on {result['device']}{f' ({threads} threads)' if result['device'] == 'cpu' else ''}, "
        f"input {result['input_shape']}, "
        f"{result['warmup']} warm-up + {result['repeats']} repetitions, medians, dense and pruned interleaved, "
        f"runtime {result.get('runtime', 'eager')}",
        "",
        "| | dense | pruned | pruned vs dense |",
        "|---|---:|---:|---:|",
        *[f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows],
        "",
        f"Measured whole-forward speed-up {result['speedup_forward']:.2f}x = "
        f"{result['measured_over_bound']:.0%} of the MAC bound {result['mac_bound_forward']:.2f}x.",
    ]
    if cap := speedup_cap_line(result):
        lines.append(cap)
    if runtimes := result.get("runtimes"):
        lines += ["", *runtimes_markdown(runtimes)]
    return "\n".join(lines) + "\n"


def runtimes_markdown(table: dict[str, Any]) -> list[str]:
    """``benchmark.runtimes``' table: one row per runtime, dense and pruned, and the fastest pruned deployment."""
    fastest = table["fastest_pruned"]

    def prepared(seconds: dict[str, float]) -> str:
        return f"{seconds['dense']:.1f} / {seconds['pruned']:.1f}" if any(seconds.values()) else "–"

    return [
        f"Runtimes ({table['threads']} threads on CPU, input {table['input_shape']}, {table['repeats']} repetitions, "
        "medians, every runtime and network interleaved)",
        "",
        "| runtime | dense ms | pruned ms | pruned vs dense | pruned vs dense eager | prepared in, s (dense / pruned) "
        "| output vs eager (max relative difference) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {row['runtime']} | {row['dense_ms']:.1f} | {row['pruned_ms']:.1f} | {row['speedup']:.2f}x "
            f"| {row['pruned_vs_dense_eager']:.2f}x "
            f"| {prepared(row['prepare_s'])} "
            f"| {row['relative_difference']:.0e} |"
            for row in table["rows"]
        ],
        "",
        f"Fastest pruned deployment: {fastest['runtime']}, {fastest['pruned_ms']:.1f} ms per forward, "
        f"{fastest['pruned_vs_dense_eager']:.2f}x the dense network in eager PyTorch"
        + (
            f" (not considered, their output more than {table['agreement']:g} from eager's: "
            f"{', '.join(table['not_considered'])})."
            if table["not_considered"]
            else "."
        ),
    ]


def volume_count(volume: dict[str, Any]) -> str:
    """How many volumes a per-volume median stands for, as the tables say it (none for a single volume)."""
    count = volume.get("volumes", 1)
    return f"median of {count} volumes, " if count > 1 else ""
