"""A network of your own, outside spade-pl, pruned and fine-tuned by the unchanged pipeline.

It only uses the MBDL contract (``spade_pl.models.base.MBDLNetwork``) and the physics contract
(``physics.data_term(y)``: ``init``, ``grad``; ``to_channels`` / ``from_channels``), so it runs on every problem:
unrolled proximal gradient descent with a DnCNN denoiser per iteration.

    PYTHONPATH=examples python -m spade_pl problem=sr prune.ratio=0.5 finetune=distill \\
        network=custom 'network.model={_target_: custom_network.UnrolledDnCNN, channels: 1}'
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.base import DATA_TERM, Physics


class DnCNN(nn.Module):
    """Zhang et al. 2017, without batch norm: conv-ReLU stacks that predict the noise, subtracted from the input."""

    def __init__(self, channels: int, features: int = 32, depth: int = 5):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.tail = nn.Conv2d(features, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.tail(self.body(x))


class UnrolledDnCNN(MBDLNetwork):
    """``x ← D_k(x − η_k A^H(A x − y))`` for ``iterations`` steps, from the physics' starting image."""

    needs = frozenset({DATA_TERM})  # whatever the physics' data term needs (MRI: the data's coil maps)
    # its iterations are stages depth pruning may remove (prune.depth), each with its step size
    stages_at, stage_parameters, stage_argument = "denoisers", ("step_sizes",), "iterations"

    def __init__(self, channels: int = 1, iterations: int = 4, features: int = 32, depth: int = 5):
        super().__init__()
        self.step_sizes = nn.Parameter(torch.ones(iterations))
        self.denoisers = nn.ModuleList(DnCNN(channels, features, depth) for _ in range(iterations))

    def forward(self, y: Tensor, physics: Physics) -> Tensor:
        term = physics.data_term(y)
        x = term.init()
        for step, denoiser in zip(self.step_sizes, self.denoisers, strict=True):
            z = x - step * term.grad(x)
            x = physics.from_channels(denoiser(physics.to_channels(z)))
        return x

    def priors(self) -> dict[str, nn.Module]:
        # named by the dense network's iteration index, which stays when depth pruning removes others
        return {f"dncnn{i}": denoiser for i, denoiser in zip(self.stage_ids(), self.denoisers, strict=True)}

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {name: [denoiser.tail] for name, denoiser in self.priors().items()}
