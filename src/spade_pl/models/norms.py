"""Instance norm computed by the group-norm kernel: the same math, several times faster on CPU."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_pruning.utils import op_counter


class GroupKernelInstanceNorm2d(nn.InstanceNorm2d):
    """``InstanceNorm2d`` (no affine, no running statistics) run as ``group_norm`` with one group per channel.

    Both normalise every (sample, channel) plane by its own mean and biased variance, so outputs and
    gradients are those of ``InstanceNorm2d`` (to float rounding). PyTorch's instance norm goes through
    batch norm on a reshaped tensor, which on CPU measured 2.5-4.5x slower than ``group_norm`` on the
    U-Net activations of E2E-VarNet (a fifth of a pruned forward). Being an ``InstanceNorm2d`` subclass,
    torch-pruning treats it as one; the group count is read from the input, so pruning needs no update.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:  # unbatched (C, H, W) input: InstanceNorm2d's own path
            return super().forward(x)
        return F.group_norm(x, x.shape[1], eps=self.eps)


# torch-pruning's MAC counter looks modules up by exact type: count this one as the InstanceNorm2d it is.
op_counter.MODULES_MAPPING[GroupKernelInstanceNorm2d] = op_counter.MODULES_MAPPING[nn.InstanceNorm2d]


def use_group_kernel_instance_norms(module: nn.Module) -> nn.Module:
    """Swap, in place, every parameter-free ``InstanceNorm2d`` under ``module`` for the faster equivalent."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is nn.InstanceNorm2d and not child.affine and not child.track_running_stats:
                setattr(parent, name, GroupKernelInstanceNorm2d(child.num_features, eps=child.eps))
    return module
