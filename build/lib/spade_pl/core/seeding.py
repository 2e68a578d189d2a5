"""Seeds derived from (seed, stage, epoch, step, ...): every random draw of training is a function of where in
training it happens, never of what the process did before, so a resumed job repeats the uninterrupted one."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across processes and Python runs, unlike ``hash``)."""
    digest = hashlib.sha1(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def reseed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every GPU) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
