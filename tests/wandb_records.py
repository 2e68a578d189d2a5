"""Read an offline W&B run's transaction log (``run-*.wandb``): what ``wandb sync`` would upload.

wandb-core writes a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks
of chunks (CRC32 4 bytes, length 2 bytes little-endian, type 1 byte: full/first/middle/last) whose payloads are
``wandb_internal_pb2.Record`` messages. The Python reader that used to ship with wandb is gone.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: how W&B's runs table names nested config keys."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def run_contents(run_dir: Path) -> dict[str, Any]:
    """``{"run": (group, job_type, name), "config": {...}, "summary": {...}, "history_keys": set}`` of one run."""
    contents: dict[str, Any] = {"config": {}, "summary": {}, "history_keys": set()}
    for record in records(next(run_dir.glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            contents["run"] = (record.run.run_group, record.run.job_type, record.run.display_name)
            contents["config"].update({_key(u): json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            contents["config"].update({_key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "summary":
            contents["summary"].update({_key(u): json.loads(u.value_json) for u in record.summary.update})
        elif kind == "history":
            contents["history_keys"].update(_key(item) for item in record.history.item)
    return contents
