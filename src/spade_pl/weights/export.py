"""``stage=export``'s weight files: the network (dense or pruned) as plain tensors that a user's own code loads.

``state_dict.pt`` holds ``{"state_dict", "spade_pruning", "spade_pl_network"}``: the weights, torch-pruning's
pruning history of each pruned prior (with the prior's place in the network) and the stages depth pruning kept,
and the network's config. spade-pl
reads it back through ``ckpt_path=``; without spade-pl's pipeline, the dense class and torch-pruning rebuild the
pruned network (:data:`REBUILD`, the lines the docs show). Where the network has a format of its own library
(:meth:`~spade_pl.models.base.MBDLNetwork.library_format`: E2E-VarNet as a plain ``fastmri.models.VarNet``), that
file is written too, or one line says why these weights do not fit it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from spade_pl.core.atomic_io import atomic_torch_save
from spade_pl.core.errors import SpadeInputError
from spade_pl.models.base import MBDLNetwork
from spade_pl.pruning.counting import count_params
from spade_pl.weights.load import NETWORK_CONFIG_KEY, PRUNING_KEY

STATE_DICT_FILE = "state_dict.pt"

#: rebuilding the pruned network from its dense class, with torch and torch-pruning only (docs: Export)
REBUILD = """\
import torch
import torch_pruning as tp

saved = torch.load("export/state_dict.pt", weights_only=True)
pruning = saved.get("spade_pruning", {})  # absent for a dense network
# the class and arguments it was trained with (saved["spade_pl_network"]), with the stages it kept (prune.depth)
network = DenseClass(**{**arguments, **pruning.get("depth", {}).get("arguments", {})})
for prior in pruning.get("priors", {}).values():
    module = network.get_submodule(prior["module"])
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=torch.zeros(prior["input_shape"]))
    graph.load_pruning_history(prior["history"])
network.load_state_dict(saved["state_dict"])
"""


def with_module_paths(network: MBDLNetwork, structure: dict[str, Any]) -> dict[str, Any]:
    """``structure`` with each prior's place in ``network`` (``"module"``: its ``get_submodule`` path), and for a
    depth-pruned network the constructor argument that builds it with the stages it kept."""
    paths = {id(module): path for path, module in network.named_modules()}
    priors = network.priors()
    located = copy.deepcopy(structure)
    if "depth" in located:
        located["depth"]["arguments"] = {network.stage_argument: network.stage_count()}
    for name, entry in located.get("priors", {}).items():
        entry["module"] = paths[id(priors[name])]
    return located


def write_state_dict(
    network: MBDLNetwork, structure: dict[str, Any] | None, config: dict[str, Any], folder: Path
) -> dict[str, Any]:
    """Write ``state_dict.pt`` (see the module docstring); returns its record for export.json."""
    saved: dict[str, Any] = {"state_dict": network.state_dict(), NETWORK_CONFIG_KEY: config}
    if structure:
        saved[PRUNING_KEY] = with_module_paths(network, structure)
    path = folder / STATE_DICT_FILE
    atomic_torch_save(path, saved)
    return {"file": str(path), "pruned": bool(structure), "parameters": count_params(network)}


def write_library_format(network: MBDLNetwork, folder: Path) -> dict[str, Any] | None:
    """The network in its own library's format (None: it has none); ``{"not_written": why}`` when these weights do
    not fit that format (e.g. pruned widths that are not a fastMRI VarNet's)."""
    try:
        native = network.library_format()
    except SpadeInputError as err:
        return {"not_written": str(err)}
    if native is None:
        return None
    path = folder / native.filename
    atomic_torch_save(path, native.state)
    return {"file": str(path), "constructor": native.constructor, "arguments": native.arguments}
