"""Instance norm computed by the group-norm kernel: the same math, several times faster on CPU."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: per channels-last input (shape, dtype, threads): whether normalising a contiguous copy measured faster
_VIA_CONTIGUOUS: dict[tuple, bool] = {}
#: calls per kernel when timing the two (the faster one's best time counts)
_TIMED_CALLS = 3
#: whether channels-last instance norms take the kernel measured fastest (inside :func:`measured_kernels`)
_MEASURING = False


@contextlib.contextmanager
def measured_kernels() -> Iterator[None]:
    """Within: channels-last instance norms in inference take the kernel measured fastest for their shape.

    Only where time is what is measured (benchmarks, timed structure choices): a choice made by timing can
    differ between runs in the last bits of an output, which must not move validation losses, checkpoint
    selection or reported metrics."""
    global _MEASURING
    previous, _MEASURING = _MEASURING, True
    try:
        yield
    finally:
        _MEASURING = previous


def _kernel(x: Tensor, eps: float) -> Tensor:
    return F.group_norm(x, x.shape[1], eps=eps)


def _via_contiguous(x: Tensor, eps: float) -> Tensor:
    return _kernel(x.contiguous(), eps).contiguous(memory_format=torch.channels_last)


def _best_seconds(fn: Callable[[], Tensor]) -> tuple[float, Tensor]:
    out, best = fn(), float("inf")
    for _ in range(_TIMED_CALLS):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _channels_last_on_cpu(x: Tensor) -> bool:
    """A CPU activation in the channels-last layout only: where the kernel is worth choosing."""
    return x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _tunable(x: Tensor) -> bool:
    """A channels-last CPU activation in timed inference outside a trace: where the kernel is chosen by timing."""
    return _MEASURING and not torch.is_grad_enabled() and not torch.jit.is_tracing() and _channels_last_on_cpu(x)


def _trained_channels_last(x: Tensor) -> bool:
    """A channels-last CPU activation under autograd: normalised on a contiguous copy (see the class)."""
    return torch.is_grad_enabled() and _channels_last_on_cpu(x)


def channels_last_instance_norm(x: Tensor, eps: float) -> Tensor:
    """Instance norm of a channels-last ``x`` by the faster of two kernels, measured once per input shape.

    PyTorch's channels-last group-norm kernel vectorises over channels; at widths that are not a multiple
    of the CPU's vector (the 4 or 9 channels pruning leaves) it measured up to 2.6x slower than the
    contiguous kernel on a contiguous copy (16 x 4 x 320 x 320: 15.8 ms vs 6.0 ms with both copies), and
    faster at others (1 x 18 x 320 x 320: 1.5 ms vs 2.5 ms), with no rule in the widths
    (``experiments/instance_norm_kernels.py``). So, like cuDNN's
    benchmark mode, both are timed on the first input of each shape and the faster one serves that shape
    from then on. Both compute the same normalisation (outputs equal to float rounding) and return
    channels-last, so the next layer sees the layout it was given.
    """
    key = (tuple(x.shape), x.dtype, torch.get_num_threads())
    choice = _VIA_CONTIGUOUS.get(key)
    if choice is None:
        direct, out_direct = _best_seconds(lambda: _kernel(x, eps))
        copied, out_copied = _best_seconds(lambda: _via_contiguous(x, eps))
        choice = _VIA_CONTIGUOUS[key] = copied < direct
        return out_copied if choice else out_direct  # every call of this shape gives the chosen kernel's bits
    return _via_contiguous(x, eps) if choice else _kernel(x, eps)


class GroupKernelInstanceNorm2d(nn.InstanceNorm2d):
    """``InstanceNorm2d`` (no affine, no running statistics) run as ``group_norm`` with one group per channel.

    Both normalise every (sample, channel) plane by its own mean and biased variance, so outputs and
    gradients are those of ``InstanceNorm2d`` (to float rounding). PyTorch's instance norm goes through
    batch norm on a reshaped tensor, which on CPU measured 2.5-4.5x slower than ``group_norm`` on the
    U-Net activations of E2E-VarNet (a fifth of a pruned forward). Being an ``InstanceNorm2d`` subclass,
    torch-pruning treats it as one; the group count is read from the input, so pruning needs no update.
    Channels-last activations in timed inference (:func:`measured_kernels`; fastmri's sensitivity net gets one
    from its complex-to-channel permute, every prior in ``benchmark.memory_format=channels_last``) take
    :func:`channels_last_instance_norm`. Under autograd on CPU they are normalised on a contiguous copy, always
    (a fixed rule, so training is reproducible): PyTorch's channels-last group-norm backward measured up to 5x
    slower than copying, normalising and copying back at most widths of E2E-VarNet's U-Nets (16 x 4 x 128 x 128:
    8.9 ms vs 1.8 ms forward and backward; a few were slightly faster), which made a self-supervised step of the
    pruned default E2E-VarNet take 0.76 s instead of 0.56 s (``experiments/training_step_time.py``). The
    convolutions stay channels-last, where their backward is the faster one.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:  # unbatched (C, H, W) input: InstanceNorm2d's own path
            return super().forward(x)
        if _tunable(x):
            return channels_last_instance_norm(x, self.eps)
        if _trained_channels_last(x):
            return _via_contiguous(x, self.eps)
        return _kernel(x, self.eps)


def use_group_kernel_instance_norms(module: nn.Module) -> nn.Module:
    """Swap, in place, every parameter-free ``InstanceNorm2d`` under ``module`` for the faster equivalent."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is nn.InstanceNorm2d and not child.affine and not child.track_running_stats:
                setattr(parent, name, GroupKernelInstanceNorm2d(child.num_features, eps=child.eps))
    return module
