"""The physics contract every inverse problem implements (in the spirit of deepinv's ``LinearPhysics``).

A physics object is a per-batch value: it carries the batch's operator data (MRI: mask and coil maps;
super-resolution: blur kernel, scale, measured-pixel mask), has no parameters and is never traced or pruned.
Networks, pruning, fine-tuning objectives and the benchmark use only this interface, so a new problem is new
files (physics, data, networks, configs), not edits to the spine.

- ``A`` / ``A_adjoint``: the measurement operator and its adjoint.
- ``data_term(y)``: ``A`` bound to measurements ``y`` for iterative networks: ``init()`` (a starting image,
  ``A^H y`` by default), ``grad(x)`` = ``A^H(A x − y)`` (a physics may override it with a faster equivalent,
  e.g. MRI's native-order k-space), and ``prox(z, alpha)`` = ``argmin_x ‖A x − y‖² + alpha ‖x − z‖²``
  (conjugate gradients, or a physics' closed form).
- ``channels``, ``to_channels`` / ``from_channels``: how images meet CNN priors (``(B, C, H, W)`` tensors).
- For self-supervised fine-tuning: ``transformed(fn)`` (the operator for a transformed object: MRI rotates
  its coil maps, a shift-invariant blur stays as it is), ``frozen()`` (the operator with nothing that
  gradients could move), ``split(fraction)`` (two operators on disjoint parts of the measurements),
  ``with_mask`` / ``apply_mask`` (restrict to a measured subset), ``ei_transforms()`` (the group equivariant
  imaging learns from). Measurement-based objectives compare in a :class:`MeasurementView`, which the network
  provides (the image with ``A``, by default; multi-coil MRI's coil images for a network that predicts them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from spade_pl.core.errors import SpadeInputError
from spade_pl.physics.equivariance import Rotations, TransformGroup


class DataTerm:
    """``A`` bound to measurements ``y``: what unrolled and fixed-point networks iterate with."""

    def __init__(self, physics: Physics, y: Tensor):
        self.physics = physics
        self.y = y

    def init(self) -> Tensor:
        """A starting image: ``A^H y`` unless the physics knows a better one (super-resolution: bicubic)."""
        return self.physics.A_adjoint(self.y)

    def grad(self, x: Tensor) -> Tensor:
        """``A^H(A x − y)``, the gradient of ``½‖A x − y‖²``."""
        return self.physics.A_adjoint(self.physics.A(x) - self.y)

    def prox(self, z: Tensor, alpha: Tensor | float, iterations: int = 30) -> Tensor:
        """``argmin_x ‖A x − y‖² + α ‖x − z‖²`` by conjugate gradients on ``(A^H A + α) x = A^H y + α z``
        (a physics overrides this with a closed form where one exists)."""
        alpha = torch.as_tensor(alpha, dtype=z.dtype, device=z.device).reshape(-1, *[1] * (z.dim() - 1))

        def normal(v: Tensor) -> Tensor:
            return self.physics.A_adjoint(self.physics.A(v)) + alpha * v

        def dot(a: Tensor, b: Tensor) -> Tensor:  # per batch item, shaped to broadcast over the image
            return (a * b).flatten(1).sum(1).reshape(-1, *[1] * (a.dim() - 1))

        x = z
        residual = self.physics.A_adjoint(self.y) + alpha * z - normal(x)
        direction, energy = residual, dot(residual, residual)
        for _ in range(iterations):
            step_normal = normal(direction)
            step = energy / dot(direction, step_normal).clamp_min(1e-30)
            x = x + step * direction
            residual = residual - step * step_normal
            new_energy = dot(residual, residual)
            direction = residual + (new_energy / energy.clamp_min(1e-30)) * direction
            energy = new_energy
        return x


#: What a physics can provide beyond the contract, and a network may need of it (``MBDLNetwork.needs``); each
#: value says it in words, for the one line a mismatch prints.
MULTICOIL_KSPACE = "multi-coil k-space measurements"
COIL_MAPS = "coil maps"
CLOSED_FORM_PROX = "a closed-form proximal data step"
#: a network that iterates with ``physics.data_term(y)`` needs whatever the physics needs for it
#: (:attr:`Physics.data_term_needs`: multi-coil MRI's coil maps)
DATA_TERM = "the physics' data term"


class MissingOperatorData(SpadeInputError):
    """The operator lacks data that an operation needs (multi-coil MRI without coil maps): ``what`` is missing
    and ``remedy`` says how to get it. Networks catch this type, never a plain ``ValueError``, and name
    themselves in the one line the user reads."""

    def __init__(self, what: str, remedy: str):
        super().__init__(f"this operation needs {what}, and the data has none; {remedy}")
        self.what, self.remedy = what, remedy


class Physics(ABC):
    """See the module docstring. Two things beyond the methods: a physics is a (frozen) dataclass, so that a
    fixed acquisition's integer fields can be pinned for an exported trace or a CUDA graph
    (``dataclasses.fields`` / ``replace``), and its ``mask`` field is the measured subset that
    :meth:`with_mask` and :meth:`split` work on (measurement splitting reads the held-out part's ``mask``)."""

    #: the measured subset of the measurements (True where measured); None: all of them
    mask: Tensor | None

    #: channels of the image a CNN prior sees (MRI: 2 = real, imaginary; SR: 1 or 3 colour channels)
    channels: int = 1
    #: what this physics provides beyond the contract (:data:`MULTICOIL_KSPACE`, ...), for networks that need it
    provides: frozenset[str] = frozenset()
    #: what ``data_term`` needs of the data (:data:`COIL_MAPS` for multi-coil MRI), for networks that need
    #: :data:`DATA_TERM`; the datamodule checks every file for it before any work
    data_term_needs: frozenset[str] = frozenset()

    @abstractmethod
    def A(self, x: Tensor) -> Tensor: ...  # noqa: N802 (operator notation)

    @abstractmethod
    def A_adjoint(self, y: Tensor) -> Tensor: ...  # noqa: N802

    def data_term(self, y: Tensor) -> DataTerm:
        return DataTerm(self, y)

    def image_size(self, y: Tensor) -> tuple[int, int]:
        """``(H, W)`` of the image ``x`` that measurements ``y`` stand for (what a network's priors see)."""
        return tuple(self.to_channels(self.A_adjoint(y)).shape[-2:])

    def to_channels(self, x: Tensor) -> Tensor:
        """Image -> ``(B, channels, H, W)`` for a CNN prior (identity when images are already that)."""
        return x

    def from_channels(self, t: Tensor) -> Tensor:
        """The inverse of :meth:`to_channels`."""
        return t

    def transformed(self, transform: Callable[[Tensor], Tensor]) -> Physics:
        """The operator that measures ``transform(x)`` as this one measures ``x`` (default: unchanged)."""
        return self

    def ei_transforms(self) -> TransformGroup:
        """The transforms this operator is *not* equivariant to, which equivariant imaging learns from (a new
        group, with its own randomness, per call): exact quarter turns here, which suit Cartesian MRI (a column
        mask is equivariant to shifts); a physics equivariant to rotations returns another group."""
        return Rotations()

    def frozen(self) -> Physics:
        """This operator with every tensor detached (nothing the optimiser could move)."""
        return self

    def at_fixed_acquisition(self) -> Physics:
        """This operator as a captured forward (an export, a CUDA graph) takes it: a field that only decides which
        code runs, not what it computes, replaced by what it decides (e.g. a measured-pixel mask that measures
        every pixel: no mask), so that no branch depends on a tensor's values. By default: itself."""
        return self

    @abstractmethod
    def apply_mask(self, y: Tensor) -> Tensor: ...

    @abstractmethod
    def with_mask(self, mask: Tensor) -> Physics: ...

    @abstractmethod
    def split(self, fraction: float, generator: torch.Generator | None = None) -> tuple[Physics, Physics]: ...


@dataclass(frozen=True)
class MeasurementView:
    """The domain measurement-based objectives compare in: the unknowns ``x`` a network's output stands for, the
    fixed operator that measures them, and their channel planes for transforms.

    ``estimate(y, physics, calibration)``: ``x`` from measurements (``calibration``: the network's, reused
    for a scan with the same centre, or None); ``measure(x, operator)``: ``A x``; ``to_planes(x)``: ``x`` as
    real ``(B, N, H, W)`` planes; ``from_planes(planes, like)``: the inverse, for tensors shaped like ``like``.
    """

    operator: Physics
    estimate: Callable[[Tensor, Physics, Tensor | None], Tensor]
    measure: Callable[[Tensor, Physics], Tensor]
    to_planes: Callable[[Tensor], Tensor]
    from_planes: Callable[[Tensor, Tensor], Tensor]
