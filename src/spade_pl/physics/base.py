"""The physics contract every inverse problem implements (in the spirit of deepinv's ``LinearPhysics``).

A physics object is a per-batch value: it carries the batch's operator data (MRI: mask and coil maps;
super-resolution: blur kernel, scale, measured-pixel mask), has no parameters and is never traced or pruned.
Networks, pruning, fine-tuning objectives and the benchmark use only this interface, so a new problem is new
files (physics, data, networks, configs), not edits to the spine.

- ``A`` / ``A_adjoint``: the measurement operator and its adjoint.
- ``data_term(y)``: ``A`` bound to measurements ``y`` for iterative networks: ``init()`` = ``A^H y`` and
  ``grad(x)`` = ``A^H(A x − y)`` (a physics may override it with a faster equivalent, e.g. MRI's native-order
  k-space), and ``prox(z, alpha)`` = ``argmin_x ‖A x − y‖² + alpha ‖x − z‖²`` where a closed form exists.
- ``channels``, ``to_channels`` / ``from_channels``: how images meet CNN priors (``(B, C, H, W)`` tensors).
- For self-supervised fine-tuning: ``transformed(fn)`` (the operator for a transformed object: MRI rotates
  its coil maps, a shift-invariant blur stays as it is), ``frozen()`` (the operator with nothing that
  gradients could move), ``split(fraction)`` (two operators on disjoint parts of the measurements),
  ``with_mask`` / ``apply_mask`` (restrict to a measured subset).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class DataTerm:
    """``A`` bound to measurements ``y``: what unrolled and fixed-point networks iterate with."""

    def __init__(self, physics: Physics, y: Tensor):
        self.physics = physics
        self.y = y

    def init(self) -> Tensor:
        """The starting image ``A^H y``."""
        return self.physics.A_adjoint(self.y)

    def grad(self, x: Tensor) -> Tensor:
        """``A^H(A x − y)``, the gradient of ``½‖A x − y‖²``."""
        return self.physics.A_adjoint(self.physics.A(x) - self.y)

    def prox(self, z: Tensor, alpha: Tensor | float) -> Tensor:
        raise NotImplementedError(f"{type(self.physics).__name__} has no closed-form data step")


class Physics(ABC):
    """See the module docstring."""

    #: channels of the image a CNN prior sees (MRI: 2 = real, imaginary; SR: 1 or 3 colour channels)
    channels: int = 1

    @abstractmethod
    def A(self, x: Tensor) -> Tensor: ...  # noqa: N802 (operator notation)

    @abstractmethod
    def A_adjoint(self, y: Tensor) -> Tensor: ...  # noqa: N802

    def data_term(self, y: Tensor) -> DataTerm:
        return DataTerm(self, y)

    def to_channels(self, x: Tensor) -> Tensor:
        """Image -> ``(B, channels, H, W)`` for a CNN prior (identity when images are already that)."""
        return x

    def from_channels(self, t: Tensor) -> Tensor:
        """The inverse of :meth:`to_channels`."""
        return t

    def transformed(self, transform: Callable[[Tensor], Tensor]) -> Physics:
        """The operator that measures ``transform(x)`` as this one measures ``x`` (default: unchanged)."""
        return self

    def frozen(self) -> Physics:
        """This operator with every tensor detached (nothing the optimiser could move)."""
        return self

    @abstractmethod
    def apply_mask(self, y: Tensor) -> Tensor: ...

    @abstractmethod
    def with_mask(self, mask: Tensor) -> Physics: ...

    @abstractmethod
    def split(self, fraction: float, generator: torch.Generator | None = None) -> tuple[Physics, Physics]: ...

    def describe(self) -> dict[str, Any]:
        return {"operator": type(self).__name__}
