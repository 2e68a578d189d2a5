"""The three strategies as loss modules: values, where gradients go, and what data they may read."""

import copy

import pytest
import torch
from fastmri.evaluate import psnr as fastmri_psnr
from torch import nn

from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.embedded import birdcage_maps
from spade_pl.data.mri.slice_transform import MRISample
from spade_pl.models import E2EVarNet
from spade_pl.models.base import MBDLNetwork
from spade_pl.objectives import Distill, SelfSupervised, Supervised
from spade_pl.objectives.base import ReconstructionLoss
from spade_pl.objectives.selfsup import magnitude_sparsity, relative_error
from spade_pl.physics.base import COIL_MAPS
from spade_pl.physics.equivariance import Rotations, Shifts, Union, rotate
from spade_pl.physics.mri import MultiCoilMRI, complex_planes, from_complex_planes, ifft2c
from spade_pl.physics.sr import Downsampling, make_kernel
from spade_pl.training.lightning_module import ReconModule


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

    needs = frozenset({COIL_MAPS})

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


@pytest.mark.parametrize("kind", ReconstructionLoss.KINDS)
def test_every_loss_is_zero_at_the_reference_and_grows_with_the_error(kind):
    torch.manual_seed(0)
    reference = torch.rand(2, 16, 16) + 0.1
    noise = torch.randn_like(reference)
    losses = [ReconstructionLoss(kind)(reference + scale * noise, reference).item() for scale in (0, 0.05, 0.2)]
    assert losses[0] < 1e-6 < losses[1] < losses[2]


def test_the_mse_loss_is_the_relative_squared_error_whatever_the_data_scale():
    torch.manual_seed(0)
    reference, prediction = torch.rand(2, 16, 16), torch.rand(2, 16, 16)
    expected = ((prediction - reference) ** 2).sum() / (reference**2).sum()
    for scale in (1e-4, 1.0):
        loss = ReconstructionLoss("mse")(scale * prediction, scale * reference)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


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


def test_cascade_distillation_adds_the_earlier_cascades_images_and_needs_cascades():
    batch = _batch()
    teacher, student = _tiny_varnet(0).eval().requires_grad_(False), _tiny_varnet(1).eval()
    with torch.no_grad():
        images = student.cascade_images(batch.y, batch.physics())
        assert len(images) == 2 and torch.equal(images[-1], student(batch.y, batch.physics()))
        plain, plain_logs = Distill("l1")(batch, student, teacher)
        loss, logs = Distill("l1", cascade_weight=0.5)(batch, student, teacher)
    assert torch.equal(logs["distill"], plain_logs["distill"]) and "distill_cascades" not in plain_logs
    assert torch.allclose(loss, plain + 0.5 * logs["distill_cascades"]) and logs["distill_cascades"] > 0
    assert Distill("l1", cascade_weight=0.5)(batch, _tiny_varnet(0).eval(), teacher)[0].item() < 1e-6
    with pytest.raises(SpadeInputError, match="cascade_weight=0.5 needs a network with cascades"):
        Distill("l1", cascade_weight=0.5)(batch, ZeroFilledSense(), ZeroFilledSense())
    with pytest.raises(SpadeInputError, match="cascade_weight=-1"):
        Distill("l1", cascade_weight=-1)


def test_distill_and_selfsup_never_read_the_ground_truth():
    poisoned = _batch(target=torch.full((1, 32, 32), float("nan")))
    student, teacher = _tiny_varnet(1), _tiny_varnet(0).eval().requires_grad_(False)
    for objective, t in (
        (Distill("l1"), teacher),
        (Distill("l1", cascade_weight=1.0), teacher),
        (SelfSupervised(), None),
    ):
        assert not objective.uses_ground_truth
        loss, _ = objective(poisoned, student, t)
        assert torch.isfinite(loss)


def test_distill_without_teacher_is_refused():
    with pytest.raises(SpadeInputError, match="needs the dense teacher"):
        Distill()(_batch(), _tiny_varnet(), None)


def test_selfsup_is_zero_for_an_exact_equivariant_inverse():
    batch = _batch(full=True)
    objective = SelfSupervised(Rotations([90, 180, 270], num_transforms=3))
    loss, logs = objective(batch, ZeroFilledSense(1.0))
    assert loss.item() < 1e-6, logs  # float32 round-off only
    wrong, _ = objective(batch, ZeroFilledSense(0.7))
    assert wrong.item() > 1e-3


def test_selfsup_terms_are_relative_errors_on_one_scale():
    batch = _batch()
    scaled = batch._replace(masked_kspace=batch.masked_kspace * 1000)
    objective = SelfSupervised(Rotations(num_transforms=2))
    student = ZeroFilledSense(0.7).eval()  # eval: the same rotations for both calls
    loss, logs = objective(batch, student)
    loss_scaled, _ = objective(scaled, student)
    assert loss_scaled.item() == pytest.approx(loss.item(), rel=1e-4)  # the data's scale does not matter
    assert 0.05 < logs["selfsup_mc"].item() < 1 and 0.05 < logs["selfsup_ei"].item() < 2
    x = torch.randn(2, 5, 5, 2)
    assert relative_error(2 * x, x).item() == pytest.approx(1.0)
    assert relative_error(x, x, torch.zeros(2, 5, 5, 1)).item() == 0.0


def test_selfsup_gradients_reach_the_student():
    student = _tiny_varnet(1).train()
    loss, logs = SelfSupervised(Rotations(num_transforms=2))(_batch(), student)
    loss.backward()
    assert set(logs) == {"selfsup_mc", "selfsup_ei"}
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_selfsup_operator_is_fixed_by_the_teacher_maps():
    batch = _batch(with_maps=False)
    student, teacher = _tiny_varnet(1), _tiny_varnet(0).eval()
    physics = MultiCoilMRI(mask=batch.mask, num_low_frequencies=6)
    # the image-domain view (the contract's default) of a network that estimates its maps takes the teacher's
    with_teacher = MBDLNetwork.measurement_view(student, batch.masked_kspace, physics, teacher).operator.maps
    assert torch.equal(with_teacher, teacher.measurement_physics(batch.masked_kspace, physics).maps)
    own = MBDLNetwork.measurement_view(student, batch.masked_kspace, physics, None).operator.maps
    assert not own.requires_grad and not torch.equal(own, with_teacher)


def test_selfsup_uses_estimated_maps_for_e2e_varnet_and_refuses_without_any():
    assert torch.isfinite(SelfSupervised()(_batch(with_maps=False), _tiny_varnet())[0])
    with pytest.raises(SpadeInputError, match="self-supervised fine-tuning needs the forward operator A"):
        SelfSupervised()(_batch(with_maps=False), ZeroFilledSense())


@pytest.mark.parametrize("shape", [(1, 4, 24, 16, 2), (1, 4, 16, 24, 2)])
def test_selfsup_runs_on_non_square_kspace(shape):
    """Real fastMRI k-space is never square: 90°/270° must not change the image shape (the crash of issue 10)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(*shape, generator=g)
    mask = torch.zeros(1, 1, 1, shape[3], 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    mask[..., shape[3] // 2 - 2 : shape[3] // 2 + 2, :] = True
    batch = MRISample(y * mask, mask, torch.tensor([4]), torch.zeros(1, *shape[2:4]), torch.empty(0), ["f"], [0])
    student = _tiny_varnet(1).train()
    loss, _ = SelfSupervised(Rotations([90, 270, 45], num_transforms=3))(batch, student)
    loss.backward()
    assert torch.isfinite(loss)


def test_selfsup_validation_angles_are_fixed():
    rotations = Rotations(angles=None, num_transforms=3)
    assert rotations.sample(training=False) == rotations.sample(training=False)


def test_rotations():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(rotate(x, 90), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(rotate(rotate(x, 90), 270), x)
    smooth = torch.exp(-(torch.linspace(-2, 2, 33)[:, None] ** 2) - torch.linspace(-2, 2, 33)[None] ** 2)[None, None]
    back = rotate(rotate(smooth, 30), -30)
    assert (back - smooth)[..., 8:-8, 8:-8].abs().max() < 0.02  # interpolation error only
    image = torch.randn(2, 8, 8, 2)
    planes = complex_planes(image)
    assert planes.shape == (2, 2, 8, 8) and torch.equal(from_complex_planes(planes, image), image)
    assert torch.equal(from_complex_planes(rotate(rotate(planes, 90), 270), image), image)
    maps = torch.randn(2, 3, 8, 8, 2)  # coil maps rotate coil by coil
    physics = MultiCoilMRI(mask=torch.ones(2, 1, 1, 8, 1, dtype=torch.bool), maps=maps)
    turned = physics.transformed(lambda p: rotate(p, 90)).maps
    assert torch.equal(turned[:, 1], from_complex_planes(rotate(complex_planes(maps[:, 1]), 90), maps[:, 1]))


def test_exact_rotations_of_non_square_images_keep_the_shape_and_the_centre():
    wide = torch.zeros(1, 1, 6, 10)
    wide[..., 2:4, 4:6] = 1.0  # a centred block survives a quarter turn
    wide[..., 0, 0] = 5.0  # a corner falls outside the crop
    turned = rotate(wide, 90)
    assert turned.shape == wide.shape
    assert torch.equal(turned[..., 2:4, 4:6], torch.ones(1, 1, 2, 2)) and turned.max() == 1.0
    assert torch.equal(rotate(wide, 180), torch.rot90(wide, 2, (-2, -1)))
    valid = Rotations().valid(torch.zeros(1, 2, 6, 10), 90)
    assert valid.shape == (1, 1, 6, 10) and valid[0, 0, :, 2:8].all() and not valid[0, 0, :, :2].any()
    assert Rotations().valid(torch.zeros(1, 2, 8, 8), 45)[0, 0, 0, 0] == 0  # an empty corner


def test_shifts_are_exact_circular_and_never_the_identity():
    shifts = Shifts(period=2, num_transforms=50)
    drawn = set(shifts.sample(training=True))
    assert drawn == {(0, 1), (1, 0), (1, 1)}  # every sub-grid of a x2 decimation, never (0, 0)
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(shifts.apply(x, (1, 0)), torch.cat([x[..., 2:, :], x[..., :2, :]], dim=-2))
    assert torch.equal(shifts.apply(shifts.apply(x, (1, 1)), (-1, -1)), x) and shifts.valid(x, (1, 1)).all()
    assert shifts.sample(training=False) == shifts.sample(training=False)


def test_the_default_group_is_what_the_problem_is_not_equivariant_to():
    mri = MultiCoilMRI(mask=torch.ones(1, 1, 1, 8, 1, dtype=torch.bool)).ei_transforms()
    assert isinstance(mri, Rotations) and mri.angles == [90.0, 180.0, 270.0]
    sr = Downsampling(kernel=make_kernel("gaussian", 3), scale=3).ei_transforms()
    assert isinstance(sr, Union) and isinstance(sr.groups[0], Rotations)
    assert set(sr.groups[1].shifts) == {(r, c) for r in range(3) for c in range(3)} - {(0, 0)}


def test_a_union_draws_from_each_group_and_dispatches_to_it():
    union = Union([Rotations([90]), Shifts(period=2)], num_transforms=40)
    drawn = union.sample(training=True)
    assert {g for g, _ in drawn} == {0, 1}
    x = torch.randn(1, 2, 6, 6)
    for g, element in drawn[:4]:
        expected = rotate(x, element) if g == 0 else torch.roll(x, element, dims=(-2, -1))
        assert torch.equal(union.apply(x, (g, element)), expected)
    assert union.sample(training=False) == union.sample(training=False)


def test_bad_selfsup_settings():
    with pytest.raises(SpadeInputError, match="num_transforms=0 is invalid"):
        Rotations(num_transforms=0)
    with pytest.raises(SpadeInputError, match=r"angles=\[360\] is invalid"):
        Rotations(angles=[360])
    with pytest.raises(SpadeInputError, match="period=1 is invalid"):
        Shifts(period=1)
    with pytest.raises(SpadeInputError, match="ei_weight=-1 is invalid"):
        SelfSupervised(ei_weight=-1)


def test_objectives_do_not_touch_the_teacher_state():
    teacher = _tiny_varnet(0).eval().requires_grad_(False)
    before = copy.deepcopy(teacher.state_dict())
    Distill("l1")(_batch(), _tiny_varnet(1), teacher)[0].backward()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_magnitude_sparsity_is_scale_invariant_and_falls_as_the_background_clears():
    planes = torch.rand(2, 4, 16, 16) + 0.1
    cleared = planes.clone()
    cleared[..., :4, :] = 0  # a dark background band
    assert magnitude_sparsity(1000 * planes).item() == pytest.approx(magnitude_sparsity(planes).item(), rel=1e-5)
    assert magnitude_sparsity(cleared) < magnitude_sparsity(planes) <= 1
    assert magnitude_sparsity(torch.ones(1, 2, 4, 4)).item() == pytest.approx(1.0)


def test_selfsup_sparsity_term_is_logged_and_trains():
    student = _tiny_varnet(1).train()
    loss, logs = SelfSupervised(Rotations(num_transforms=1), sparsity_weight=0.5)(_batch(), student)
    loss.backward()
    assert set(logs) == {"selfsup_mc", "selfsup_ei", "selfsup_sparsity"} and 0 < logs["selfsup_sparsity"] < 1
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    with pytest.raises(SpadeInputError, match="sparsity_weight=-1 is invalid"):
        SelfSupervised(sparsity_weight=-1)


def test_selfsup_l1_norm_weighs_small_errors_more_and_is_scale_invariant():
    x = torch.ones(1, 100)
    one_large, many_small = x.clone(), x + 0.01  # the same squared error, 1e-2: one pixel off by 0.1, or all by 0.01
    one_large[0, 0] += 0.1
    assert relative_error(one_large, x).item() == pytest.approx(relative_error(many_small, x).item(), rel=1e-4)
    l1_small, l1_large = relative_error(many_small, x, norm=1), relative_error(one_large, x, norm=1)
    assert l1_small.item() == pytest.approx(10 * l1_large.item(), rel=1e-4)
    assert relative_error(300 * many_small, 300 * x, norm=1).item() == pytest.approx(0.01, rel=1e-4)
    student = _tiny_varnet(1).train()
    loss, logs = SelfSupervised(Rotations(num_transforms=1), split_weight=1.0, norm=1)(_batch(), student)
    loss.backward()
    assert 0 < logs["selfsup_mc"] < 1 and "selfsup_split" in logs
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    with pytest.raises(SpadeInputError, match="norm=0.5 is invalid"):
        SelfSupervised(norm=0.5)


def test_measurement_splitting_keeps_the_centre_and_splits_the_rest():
    batch = _batch()
    physics = MultiCoilMRI(mask=batch.mask, num_low_frequencies=torch.tensor([6]))
    kept, held = physics.split(0.5, torch.Generator().manual_seed(0))
    k, h, m = (p.mask.flatten() for p in (kept, held, physics))
    assert not (k & h).any() and torch.equal(k | h, m) and h.any()
    assert k[32 // 2 - 3 : 32 // 2 + 3].all()  # the fully sampled centre stays whole in the network's input


def test_selfsup_split_term_is_logged_and_trains():
    student = _tiny_varnet(1).train()
    objective = SelfSupervised(Rotations(num_transforms=1), split_weight=1.0, split_fraction=0.4)
    loss, logs = objective(_batch(), student)
    loss.backward()
    assert set(logs) == {"selfsup_mc", "selfsup_ei", "selfsup_split"} and logs["selfsup_split"] > 0
    with pytest.raises(SpadeInputError, match="split_fraction=1.5 is invalid"):
        SelfSupervised(split_fraction=1.5)


def test_selfsup_split_forward_reuses_the_coil_maps_with_the_same_loss_and_gradients(monkeypatch):
    student, batch = _tiny_varnet(1).eval(), _batch(with_maps=False)
    calls = []
    student.varnet.sens_net.norm_unet.register_forward_hook(lambda *_: calls.append(1))

    def loss_grads_and_sens_passes():
        calls.clear()
        student.zero_grad()
        loss, _ = SelfSupervised(Rotations([90]), split_weight=1.0)(batch, student)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in student.parameters()], len(calls)

    reused = loss_grads_and_sens_passes()
    monkeypatch.setattr(E2EVarNet, "calibration", lambda self, y, physics: None)
    recomputed = loss_grads_and_sens_passes()
    assert (reused[2], recomputed[2]) == (2, 3)  # full and rotated forwards; the split forward reuses
    assert torch.allclose(reused[0], recomputed[0], rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(reused[1], recomputed[1], strict=True))


def test_coil_maps_are_not_reused_when_the_centre_is_read_from_the_mask():
    student, batch = _tiny_varnet(1).eval(), _batch(with_maps=False)
    known = MultiCoilMRI(mask=batch.mask, num_low_frequencies=6)
    assert student.calibration(batch.masked_kspace, known) is not None
    unknown = MultiCoilMRI(mask=batch.mask)  # the sensitivity net finds the centre in the mask, which splits change
    assert student.calibration(batch.masked_kspace, unknown) is None


def test_validation_scores_the_split_its_seed_draws():
    student, batch = _tiny_varnet(1).eval(), _batch()

    def held_out_error(seed: int) -> float:
        objective = SelfSupervised(Rotations([90]), split_weight=1.0, eval_split_seed=seed)
        return float(objective(batch, student)[1]["selfsup_split"])

    assert held_out_error(0) == held_out_error(0)  # epochs compare on one split ...
    assert held_out_error(0) != held_out_error(1)  # ... and another seed holds out other columns


def test_e2e_varnet_predicts_coil_kspace_that_its_image_output_combines():
    net, batch = _tiny_varnet(0).eval(), _batch(with_maps=False)
    physics = MultiCoilMRI(mask=batch.mask, num_low_frequencies=6)
    with torch.no_grad():
        coils = net.coil_kspace(batch.masked_kspace, physics)
        image = net(batch.masked_kspace, physics)
        maps = net.estimate_maps(batch.masked_kspace, physics)
    assert coils.shape == batch.masked_kspace.shape
    combined = MultiCoilMRI(mask=torch.ones_like(batch.mask), maps=maps).A_adjoint(coils)
    assert torch.allclose(combined, image, atol=1e-5)
    view = net.measurement_view(batch.masked_kspace, physics)  # self-supervision compares these coil images
    assert torch.allclose(view.estimate(batch.masked_kspace, physics, None), ifft2c(coils), atol=1e-6)
    image_view = ZeroFilledSense().measurement_view(batch.masked_kspace, MultiCoilMRI(mask=batch.mask, maps=maps))
    assert image_view.estimate(batch.masked_kspace, image_view.operator, None).shape == image.shape  # the image


def test_supervised_validation_scores_the_image_its_loss_came_from_without_a_second_forward():
    batch, network = _batch(full=True), ZeroFilledSense(0.5)
    calls = []
    network.register_forward_hook(lambda *_: calls.append(1))
    loss, logs, prediction = Supervised("l1").scored(batch, network, None)
    assert len(calls) == 1 and torch.equal(loss, Supervised("l1")(batch, network)[0])
    assert torch.equal(prediction, batch.image(network(batch.y, batch.physics())))
    module = ReconModule(network, Supervised("l1"), optimizer=torch.optim.Adam)
    logged = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)
    module.log_dict = lambda values, **_: logged.update(values)
    calls.clear()
    with torch.no_grad():
        module.validation_step(batch, batch_idx=99)
    assert len(calls) == 1  # one forward: the loss's image is the one scored
    # against an independent reference: fastMRI's own PSNR (numpy, data range the target's maximum)
    target, image = batch.target[0].numpy(), prediction[0].detach().numpy()
    reference = fastmri_psnr(target, image, maxval=float(target.max()))
    assert float(logged["val/psnr"]) == pytest.approx(reference, abs=1e-4)
    # objectives that do not hand their image back are scored on a forward of their own
    assert Distill("l1").scored(batch, network, ZeroFilledSense(1.0))[2] is None
