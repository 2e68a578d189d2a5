"""``python -m spade_pl.collect RUN_OR_SWEEP_DIR ... [--out DIR]``: one table for a sweep of spade runs.

Reads every ``results.json`` under the given folders (a Hydra multirun folder, or run folders), and
writes ``sweep.csv`` and ``sweep.md`` (one row per run: ratio, strategy, PSNR/SSIM of each model,
speed-up) into ``--out`` (default: the first folder), printing the markdown.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from spade_pl.io_utils import atomic_write_text


def rows_from(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for results_file in sorted(f for p in paths for f in p.rglob("results.json")):
        results = json.loads(results_file.read_text())
        row: dict[str, Any] = {
            "run": str(results_file.parent),
            "ratio": results.get("prune", {}).get("ratio"),
            "strategy": next((m.split(" + ")[1] for m in results["models"] if " + " in m), "none"),
        }
        for name, entry in results["models"].items():
            key = name.split(" + ")[0] if " + " not in name else "finetuned"
            row[f"{key} psnr"] = round(entry["mean"]["psnr"], 3)
            row[f"{key} ssim"] = round(entry["mean"]["ssim"], 4)
        bench = results.get("benchmark")
        row["speedup"] = round(bench["speedup_forward"], 3) if bench else None
        row["mac bound"] = round(bench["mac_bound_forward"], 3) if bench else None
        rows.append(row)
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    columns = [c for c in dict.fromkeys(k for row in rows for k in row) if c != "run"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if row.get(c) is None else str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = rows_from(args.paths)
    if not rows:
        print(f"error: no results.json under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    out = args.out or args.paths[0]
    markdown = to_markdown(rows)
    atomic_write_text(out / "sweep.md", markdown)
    atomic_write_text(out / "sweep.csv", to_csv(rows))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
