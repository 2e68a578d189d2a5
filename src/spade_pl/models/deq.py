"""Deep equilibrium (DEQ) network: the fixed point of a plug-and-play proximal-gradient step, for any physics."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.models.anderson import anderson, validate_solver_settings
from spade_pl.models.base import MBDLNetwork
from spade_pl.models.edsr import EDSR, ResidualBlock
from spade_pl.physics.base import DATA_TERM, DataTerm, MissingOperatorData, Physics


class DEQNotConvergedWarning(RuntimeWarning):
    """The fixed-point solver stopped at ``max_iter`` above ``tol`` (filter it like any warning category)."""


@dataclass
class _Solution:
    """The last slice's fixed point of a volume being reconstructed in order: where the next slice starts."""

    volume: Hashable
    slice_num: int  # the slice of the last item of the batch
    x: Tensor  # its fixed point, (1, ...)
    init_norm: float  # ||A^H y|| of that item: the next slice's start is rescaled by its own ||A^H y|| over this


class DEQ(MBDLNetwork):
    """``x* = T(x*)`` with ``T(x) = alpha D(z) + (1 - alpha) z`` and ``z = x - gamma A^H(A x - y)``.

    ``D`` is an :class:`EDSR` prior on ``(B, channels, H, W)`` images (MRI: 2 = real, imaginary; super-resolution:
    3 colour channels or 1 grey, ``physics.to_channels``); ``gamma`` and
    ``alpha`` are learnable scalars. The forward pass starts from ``x0 = A^H y``, solves the fixed point by
    Anderson acceleration without gradients (the prior in whatever mode it is in), then applies ``T``
    once more with gradients and returns that (Jacobian-free backpropagation). After every forward,
    ``solver_stats`` holds the solver's ``iterations`` (prior calls), ``residual`` and ``converged``; a
    solve that did not converge also emits a :class:`DEQNotConvergedWarning`.

    Warm starts: after :meth:`next_slice_of` names the slice that follows the one the last forward solved (same
    volume), the solver starts from that slice's fixed point instead of ``A^H y``, rescaled by the ratio of the
    two slices' ``||A^H y||`` (slices are normalised one by one). The fixed point is the same (the map does not
    change, only the start); adjacent slices being alike, the solver gets there in fewer iterations.
    ``solver_stats["warm_started"]`` says which start a forward took.

    ``gamma_init``: the SPADE reference starts from gamma = 5 (with its own data and maps). Here A has
    orthonormal FFTs and maps with ``sum_c |S_c|^2 <= 1``, so ``||A^H A|| <= 1`` and the gradient step
    ``x - gamma A^H(A x - y)`` is non-expansive for 0 <= gamma <= 2. At gamma = 5 it is expansive: on the
    embedded 128x128 8-coil data an untrained DEQ's plain iteration does not converge (residual 0.3 after
    60 steps) and Anderson needs 33-43 iterations instead of 10-11 at gamma = 1. Hence the default 1.0;
    gamma stays learnable.

    The SPADE reference model also holds a third scalar (``mu``, the RED weight, init 0.5) that its DEQ
    never uses; it is deliberately not reproduced, so the paper size has 999,426 + 2 parameters, not 999,429.
    """

    needs = frozenset({DATA_TERM})  # on MRI data: the data's (or ESPIRiT) coil maps
    iterative = True
    stages_at, stage_type = "prior.body", ResidualBlock  # the prior's residual blocks (not its last conv)
    stage_argument = "num_blocks"

    def __init__(
        self,
        feats: int = 64,
        num_blocks: int = 13,
        gamma_init: float = 1.0,
        alpha_init: float = 0.2,
        memory: int = 5,
        reg: float = 1e-4,
        mixing: float = 1.0,
        tol: float = 1e-4,
        max_iter: int = 100,
        channels: int = 2,
    ):
        super().__init__()
        validate_solver_settings(memory, reg, mixing, tol, max_iter)
        self.prior = EDSR(in_channels=channels, out_channels=channels, feats=feats, num_blocks=num_blocks)
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.solver_settings = {"memory": int(memory), "reg": float(reg), "mixing": float(mixing), "tol": float(tol)}
        self.solver_settings["max_iter"] = int(max_iter)
        self.solver_stats: dict[str, Any] = {}
        self._next_slice: tuple[Hashable, int] | None = None
        self._previous: _Solution | None = None

    def fixed_point_map(self, x: Tensor, term: DataTerm) -> Tensor:
        """``T(x)``: a gradient step on the data term, then the prior, mixed by ``alpha``."""
        z = x - self.gamma * term.grad(x)
        physics = term.physics
        denoised = physics.from_channels(self.prior(physics.to_channels(z)))
        return self.alpha * denoised + (1 - self.alpha) * z

    def forward(self, y: Tensor, physics: Physics) -> Tensor:
        x_star, fixed_point_map = self.solve(y, physics)
        return fixed_point_map(x_star).contiguous()

    def solve(self, y: Tensor, physics: Physics) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """The fixed point ``x*`` (Anderson, without gradients) and the map ``T`` it is the fixed point of."""
        require(
            physics.channels == self.prior.head.in_channels,
            f"the DEQ's prior takes {self.prior.head.in_channels} channels and this problem's images have "
            f"{physics.channels} (network.model.channels; for problem=sr use network=deq_sr)",
        )
        try:
            term = physics.data_term(y)
        except MissingOperatorData as err:  # MRI data without coil maps: say how to get them
            raise SpadeInputError(
                f"network=deq needs {err.what} with the data, and this data has none; {err.remedy}"
            ) from None
        where, self._next_slice = self._next_slice, None
        with torch.no_grad():
            x0 = term.init()  # A^H y
            start = self._warm_start(where, x0)
            x_star, stats = anderson(
                lambda x: self.fixed_point_map(x, term), x0 if start is None else start, **self.solver_settings
            )
        if where is not None:
            last = where[1] + x0.shape[0] - 1  # a batch holds consecutive slices
            self._previous = _Solution(where[0], last, x_star[-1:].clone(), float(x0[-1].norm()))
        else:
            self._previous = None
        self.solver_stats = {**stats, "warm_started": start is not None}
        tol = self.solver_settings["tol"]
        if not stats["converged"]:
            warnings.warn(
                f"DEQ solver did not converge: {stats['iterations']} iterations, relative residual "
                f"{stats['residual']:.3g} > tol {tol:.3g} (raise network.model.max_iter or tol)",
                DEQNotConvergedWarning,
                stacklevel=3,
            )
        return x_star, lambda x: self.fixed_point_map(x, term)

    def next_slice_of(self, volume: Hashable, slice_num: int) -> None:
        self._next_slice = (volume, int(slice_num))

    def _warm_start(self, where: tuple[Hashable, int] | None, x0: Tensor) -> Tensor | None:
        """Each item's start from the previous slice's fixed point (rescaled), or None: start from ``x0``."""
        previous = self._previous
        if where is None or previous is None or previous.x.shape[1:] != x0.shape[1:]:
            return None
        if previous.volume != where[0] or where[1] != previous.slice_num + 1:
            return None
        norms = x0.flatten(1).norm(dim=1).reshape(-1, *[1] * (x0.dim() - 1))
        return previous.x.to(x0) * (norms / max(previous.init_norm, torch.finfo(x0.dtype).tiny))

    def priors(self) -> dict[str, nn.Module]:
        return {"prior": self.prior}

    def prior_output_layers(self) -> dict[str, list[nn.Module]]:
        return {"prior": [self.prior.tail]}
