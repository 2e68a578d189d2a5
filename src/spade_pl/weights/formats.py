"""The runnable export formats ``export.formats`` may name, and the check of a chosen list."""

from __future__ import annotations

from spade_pl.core.errors import require, require_installed
from spade_pl.weights.aoti import AOTI
from spade_pl.weights.artifacts import ArtifactFormat
from spade_pl.weights.exported_program import PT2
from spade_pl.weights.onnx import ONNX
from spade_pl.weights.torchscript import TORCHSCRIPT

FORMATS = {form.name: form for form in (PT2, AOTI, ONNX, TORCHSCRIPT)}


def chosen_formats(names: list[str]) -> list[ArtifactFormat]:
    """The formats ``export.formats`` names; an unknown one is one line listing the allowed ones, one whose
    optional dependencies are missing one line naming the extra that installs them."""
    unknown = [name for name in names if name not in FORMATS]
    allowed = ", ".join(FORMATS)
    require(not unknown, f"export.formats={list(names)} names unknown format(s) {unknown}; allowed: {allowed}")
    for name in names:
        require_installed(f"export.formats=[{name}]", FORMATS[name].requires, "deploy")
    return [FORMATS[name] for name in names]
