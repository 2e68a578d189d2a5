"""Anderson acceleration for the fixed point ``x = f(x)`` of a DEQ, each batch element solved on its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spade_pl.core.errors import RunFailure, require

#: The denominator guard of the relative residual ``||f(x) - x|| / (EPS + ||f(x)||)`` (SPADE reference).
RESIDUAL_EPS = 1e-5


def validate_solver_settings(memory: int, reg: float, mixing: float, tol: float, max_iter: int) -> None:
    """Raise :class:`SpadeInputError` (naming the ``network.model`` key) for a setting the solver cannot use."""
    require(int(max_iter) == max_iter and max_iter >= 1, f"network.model.max_iter={max_iter} is invalid; allowed: >= 1")
    require(tol > 0, f"network.model.tol={tol} is invalid; allowed: > 0")
    require(int(memory) == memory and memory >= 1, f"network.model.memory={memory} is invalid; allowed: >= 1")
    require(reg > 0, f"network.model.reg={reg} is invalid; allowed: > 0")
    require(0 < mixing <= 1, f"network.model.mixing={mixing} is invalid; allowed: 0 < mixing <= 1")


def _require_finite(t: Tensor, iteration: int, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise RunFailure(
            f"DEQ solver produced a non-finite iterate at iteration {iteration}; {what} is NaN/inf, so the fixed-point "
            f"map diverges here (lower network.model.gamma_init or the learning rate, or check the data scaling)"
        )


def _relative_residual(fx: Tensor, x: Tensor) -> Tensor:
    return (fx - x).norm(dim=1) / (RESIDUAL_EPS + fx.norm(dim=1))


def anderson(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    memory: int = 5,
    reg: float = 1e-4,
    mixing: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> tuple[Tensor, dict[str, Any]]:
    """Solve ``x = f(x)`` for a batch ``x0`` (first dim = batch) by Anderson acceleration (type II).

    Each batch element keeps its own history of the last ``memory`` iterates ``x_i`` and values
    ``f(x_i)``; the next iterate mixes them with weights ``w`` (summing to 1) that minimise
    ``||sum_i w_i g_i||^2 + reg s ||w||^2`` with residuals ``g_i = f(x_i) - x_i`` and ``s`` their mean
    squared norm, then ``x = mixing * sum w_i f(x_i) + (1 - mixing) * sum w_i x_i``. With a history of
    one this is the plain (damped) iteration ``x = f(x)``.

    ``reg`` is relative to ``s`` (the DEQ tutorial and the SPADE reference add an absolute ``reg I`` to
    ``g g^T``): an absolute 1e-4 swamps the Gram matrix of nearly converged iterates of images normalised
    like ours (``||x|| ~ 10``, so ``||g||^2 ~ 1e-6`` at tol 1e-4) and degrades Anderson to averaging; with
    the relative form the iterates do not depend on the data's scale. Measured on the embedded data: an
    untrained small DEQ needs 44 iterations with the absolute form and 11 with the relative one; after 120
    training steps the absolute form stalls (residual 8e-4 after 200 iterations, worse than the plain
    iteration) while the relative form converges in 92.

    Call it under ``torch.no_grad()``: nothing here is differentiated. ``f`` is evaluated once per
    iteration; ``iterations`` in the returned stats counts those evaluations. The residual of an element
    is ``||f(x) - x|| / (1e-5 + ||f(x)||)``; the solver stops once the largest residual of the batch is
    below ``tol`` (``converged=True``) or after ``max_iter`` evaluations. It returns, per element, the
    iterate with the lowest residual seen, and ``stats = dict(iterations, residual, converged)`` with
    ``residual`` the largest of those residuals. A NaN/inf iterate is an error, never a silent result.
    """
    validate_solver_settings(memory, reg, mixing, tol, max_iter)
    batch = x0.shape[0]
    x = x0.reshape(batch, -1)
    xs = x.new_zeros(batch, memory, x.shape[1])
    fxs = x.new_zeros(batch, memory, x.shape[1])
    best_x = x.clone()
    best_res = x.new_full((batch,), float("inf"))
    iterations = 0
    for k in range(max_iter):
        iterations = k + 1
        _require_finite(x, iterations, "the iterate")
        fx = f(x.view_as(x0)).reshape(batch, -1)
        _require_finite(fx, iterations, "the map's value")
        res = _relative_residual(fx, x)
        better = res < best_res
        best_x[better], best_res[better] = x[better], res[better]
        if float(best_res.max()) < tol or iterations == max_iter:
            break
        slot = k % memory
        xs[:, slot], fxs[:, slot] = x, fx
        n = min(k + 1, memory)
        weights = _mixing_weights(fxs[:, :n] - xs[:, :n], reg)
        mixed_f = torch.bmm(weights, fxs[:, :n]).squeeze(1)
        x = mixed_f if mixing == 1 else mixing * mixed_f + (1 - mixing) * torch.bmm(weights, xs[:, :n]).squeeze(1)
    residual = float(best_res.max())
    stats = {"iterations": iterations, "residual": residual, "converged": residual < tol}
    return best_x.view_as(x0), stats


def _mixing_weights(g: Tensor, reg: float) -> Tensor:
    """``argmin ||w^T g||^2 + reg s ||w||^2`` s.t. ``sum w = 1``, per batch element: ``(B, 1, n)`` weights.

    ``g`` holds the residuals ``f(x_i) - x_i`` as rows and ``s`` is their mean squared norm, so ``reg`` is
    relative and the weights do not depend on the scale of the data. The minimiser is
    ``w = M^{-1} 1 / (1^T M^{-1} 1)`` with ``M = g g^T + reg s I``, solved in float64.
    """
    g64 = g.double()
    gram = torch.bmm(g64, g64.transpose(1, 2))
    n = gram.shape[-1]
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an exact fixed point: any positive scale
    eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
    solved = torch.linalg.solve(gram + reg * scale[:, None, None] * eye, gram.new_ones(gram.shape[0], n, 1))
    weights = solved / solved.sum(dim=1, keepdim=True)
    return weights.transpose(1, 2).to(g.dtype)
