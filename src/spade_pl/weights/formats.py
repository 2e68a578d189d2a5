"""The runnable export formats ``export.formats`` may name, and the check of a chosen list."""

from __future__ import annotations

from spade_pl.core.errors import require
from spade_pl.weights.artifacts import ArtifactFormat
from spade_pl.weights.exported_program import PT2
from spade_pl.weights.torchscript import TORCHSCRIPT

FORMATS = {form.name: form for form in (PT2, TORCHSCRIPT)}


def chosen_formats(names: list[str]) -> list[ArtifactFormat]:
    """The formats ``export.formats`` names; an unknown one is one line listing the allowed ones."""
    unknown = [name for name in names if name not in FORMATS]
    allowed = ", ".join(FORMATS)
    require(not unknown, f"export.formats={list(names)} names unknown format(s) {unknown}; allowed: {allowed}")
    return [FORMATS[name] for name in names]
