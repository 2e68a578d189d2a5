"""The three strategies as loss modules: values, where gradients go, and what data they may read."""

import copy

import pytest
import torch
from torch import nn

from spade_pl.data.embedded import birdcage_maps
from spade_pl.data.transform import MRISample
from spade_pl.errors import SpadeInputError
from spade_pl.finetune import Distill, SelfSupervised, Supervised
from spade_pl.finetune.rotate import rotate, rotate_complex
from spade_pl.models import E2EVarNet
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.mri import MultiCoilMRI


def _batch(size=32, coils=4, full=False, with_maps=True, target=None) -> MRISample:
    g = torch.Generator().manual_seed(0)
    maps_np = birdcage_maps(coils, size)
    maps = torch.stack([torch.from_numpy(maps_np.real), torch.from_numpy(maps_np.imag)], -1).float()[None]
    x = torch.randn(1, size, size, 2, generator=g)
    mask = torch.ones(1, 1, 1, size, 1, dtype=torch.bool)
    if not full:
        mask[..., 1::2, :] = False
        mask[..., size // 2 - 3 : size // 2 + 3, :] = True
    y = MultiCoilMRI(mask=mask, maps=maps).A(x)
    return MRISample(
        masked_kspace=y,
        mask=mask,
        num_low_frequencies=torch.tensor([6]),
        target=target if target is not None else x.pow(2).sum(-1).sqrt(),
        maps=maps if with_maps else torch.empty(0),
        fname=["f.h5"],
        slice_num=torch.tensor([0]),
    )


class ZeroFilledSense(MBDLNetwork):
    """f(y) = a · A^H y: exact inverse under full sampling (a = 1) with normalised maps."""

    needs_maps = True

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, y, physics):
        return self.scale * physics.A_adjoint(y)

    def priors(self):
        return {}

    def prior_output_layers(self):
        return {}


def _tiny_varnet(seed=0):
    torch.manual_seed(seed)
    return E2EVarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)


def test_supervised_is_zero_for_a_perfect_reconstruction_and_positive_otherwise():
    batch = _batch(full=True)
    loss, logs = Supervised("l1")(batch, ZeroFilledSense(1.0))
    assert loss.item() < 1e-5 and "supervised" in logs
    assert Supervised("l1")(batch, ZeroFilledSense(0.5))[0].item() > 0.1


def test_distill_matches_teacher_and_only_the_student_gets_gradients():
    batch = _batch()
    teacher, student = _tiny_varnet(0).eval().requires_grad_(False), _tiny_varnet(0)
    assert Distill("l1")(batch, student.eval(), teacher)[0].item() < 1e-6  # same weights: zero loss
    student = _tiny_varnet(1).train()
    loss, _ = Distill("ssim")(batch, student, teacher)
    loss.backward()
    assert loss.item() > 0
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


def test_distill_and_selfsup_never_read_the_ground_truth():
    poisoned = _batch(target=torch.full((1, 32, 32), float("nan")))
    student, teacher = _tiny_varnet(1), _tiny_varnet(0).eval().requires_grad_(False)
    for objective, t in ((Distill("l1"), teacher), (SelfSupervised(), None)):
        assert not objective.uses_ground_truth
        loss, _ = objective(poisoned, student, t)
        assert torch.isfinite(loss)


def test_distill_without_teacher_is_refused():
    with pytest.raises(SpadeInputError, match="needs the dense teacher"):
        Distill()(_batch(), _tiny_varnet(), None)


def test_selfsup_is_zero_for_an_exact_equivariant_inverse():
    batch = _batch(full=True)
    objective = SelfSupervised(num_transforms=3, angles=[90, 180, 270])
    loss, logs = objective(batch, ZeroFilledSense(1.0))
    assert loss.item() < 1e-6, logs  # float32 round-off only
    wrong, _ = objective(batch, ZeroFilledSense(0.7))
    assert wrong.item() > 1e-3


def test_selfsup_gradients_reach_the_student():
    student = _tiny_varnet(1).train()
    loss, logs = SelfSupervised(num_transforms=2)(_batch(), student)
    loss.backward()
    assert set(logs) == {"selfsup_dc", "selfsup_ei"}
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_selfsup_uses_estimated_maps_for_e2e_varnet_and_refuses_without_any():
    assert torch.isfinite(SelfSupervised()(_batch(with_maps=False), _tiny_varnet())[0])
    with pytest.raises(SpadeInputError, match="finetune=selfsup needs the forward operator A"):
        SelfSupervised()(_batch(with_maps=False), ZeroFilledSense())


def test_selfsup_validation_angles_are_fixed():
    objective = SelfSupervised(num_transforms=2)
    assert objective._draw_angles(training=False) == objective._draw_angles(training=False)


def test_rotations():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(rotate(x, 90), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(rotate(rotate(x, 90), 270), x)
    smooth = torch.exp(-(torch.linspace(-2, 2, 33)[:, None] ** 2) - torch.linspace(-2, 2, 33)[None] ** 2)[None, None]
    back = rotate(rotate(smooth, 30), -30)
    assert (back - smooth)[..., 8:-8, 8:-8].abs().max() < 0.02  # interpolation error only
    image = torch.randn(2, 8, 8, 2)
    assert rotate_complex(image, 180).shape == image.shape
    assert torch.equal(rotate_complex(rotate_complex(image, 90), 270), image)
    maps = torch.randn(2, 3, 8, 8, 2)
    assert torch.equal(rotate_complex(maps, 90)[:, 1], rotate_complex(maps[:, 1], 90))


def test_bad_selfsup_settings():
    with pytest.raises(SpadeInputError, match="num_transforms=0 is invalid"):
        SelfSupervised(num_transforms=0)


def test_objectives_do_not_touch_the_teacher_state():
    teacher = _tiny_varnet(0).eval().requires_grad_(False)
    before = copy.deepcopy(teacher.state_dict())
    Distill("l1")(_batch(), _tiny_varnet(1), teacher)[0].backward()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
