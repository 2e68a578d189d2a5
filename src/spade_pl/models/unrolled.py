"""Deep unfolding for super-resolution: unrolled half-quadratic splitting (USRNet-style) with a prior per step."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spade_pl.core.errors import require
from spade_pl.models.base import MBDLNetwork
from spade_pl.models.resunet import ResUNet
from spade_pl.physics.base import CLOSED_FORM_PROX, DATA_TERM, Physics


class UnrolledHQS(MBDLNetwork):
    """``K`` iterations of ``z_k = argmin_z ‖A z − y‖² + α_k ‖z − x_{k−1}‖²`` (the physics' data step, closed form
    for super-resolution) and ``x_k = z_k + D_k(z_k)`` (a residual ResUNet prior per iteration), from ``x_0 = 0``
    (so ``z_1`` is the regularised least-squares solution). ``α_k`` are learned per iteration (positive:
    ``exp(log_alpha)``). Priors ``iter0`` .. ``iter{K-1}``, addressed by name like the MRI cascades.
    """

    needs = frozenset(
        {CLOSED_FORM_PROX, DATA_TERM}
    )  # a conjugate-gradient prox per iteration would cost what it unrolls
    stages_at, stage_argument = "steps", "iterations"
    stage_parameters = ("log_alpha",)

    def __init__(
        self,
        iterations: int = 8,
        channels: int = 1,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        blocks: int = 2,
        alpha_init: float = 0.1,
    ):
        super().__init__()
        require(int(iterations) >= 1, f"network.model.iterations={iterations} is invalid; allowed: >= 1")
        require(alpha_init > 0, f"network.model.alpha_init={alpha_init} is invalid; allowed: > 0")
        self.steps = nn.ModuleList(ResUNet(channels, channels, tuple(widths), blocks) for _ in range(int(iterations)))
        self.log_alpha = nn.Parameter(torch.full((int(iterations),), math.log(alpha_init)))

    def forward(self, y: Tensor, physics: Physics) -> Tensor:
        term = physics.data_term(y)
        x = torch.zeros_like(term.init())
        for prior, log_alpha in zip(self.steps, self.log_alpha, strict=True):
            z = term.prox(x, log_alpha.exp())
            x = physics.from_channels(physics.to_channels(z) + prior(physics.to_channels(z)))
        return x

    def priors(self) -> dict[str, nn.Module]:
        return {f"iter{i}": prior for i, prior in zip(self.stage_ids(), self.steps, strict=True)}

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {name: [prior.tail] for name, prior in self.priors().items()}
