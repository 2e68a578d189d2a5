import numpy as np
import pytest
import torch

from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.embedded import birdcage_maps
from spade_pl.physics.masks import build_mask_func
from spade_pl.physics.mri import MultiCoilMRI


def _operator(batch=2, coils=4, size=24, seed=0) -> MultiCoilMRI:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(batch, coils, size, size, 2, generator=g)
    mask = torch.rand(batch, 1, 1, size, 1, generator=g) > 0.5
    return MultiCoilMRI(mask=mask, maps=maps)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of <a, b> for complex tensors stored as (..., 2)."""
    return (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]).sum()


def test_sense_operator_is_adjoint():
    op = _operator()
    x = torch.randn(2, 24, 24, 2, dtype=torch.float64)
    y = torch.randn(2, 4, 24, 24, 2, dtype=torch.float64)
    op = MultiCoilMRI(mask=op.mask, maps=op.maps.double())
    lhs, rhs = _inner(op.A(x), y), _inner(x, op.A_adjoint(y))
    assert torch.allclose(lhs, rhs, rtol=1e-10), (lhs, rhs)


def test_sense_operator_masks_unsampled_columns():
    op = _operator()
    k = op.A(torch.randn(2, 24, 24, 2))
    unsampled = ~op.mask.expand_as(k)
    assert k[unsampled].abs().max() == 0
    assert k[~unsampled].abs().max() > 0


def test_fully_sampled_with_normalised_maps_is_an_isometry():
    maps = torch.from_numpy(np.stack([birdcage_maps(6, 32).real, birdcage_maps(6, 32).imag], -1)).float()[None]
    op = MultiCoilMRI(mask=torch.ones(1, 1, 1, 32, 1, dtype=torch.bool), maps=maps)
    x = torch.randn(1, 32, 32, 2)
    assert torch.allclose(op.A_adjoint(op.A(x)), x, atol=1e-5)


def test_operator_without_maps_says_so():
    op = MultiCoilMRI(mask=torch.ones(1, 1, 1, 8, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="coil sensitivity maps"):
        op.A(torch.zeros(1, 8, 8, 2))


def test_uniform_mask_is_every_rth_column_plus_centre():
    mask, num_low = build_mask_func("uniform", [6], [0.08])((1, 128, 2), seed=3)
    cols = mask.flatten().bool()
    assert num_low == round(128 * 0.08)
    assert cols[::6].all()
    centre = slice((128 - num_low + 1) // 2, (128 - num_low + 1) // 2 + num_low)
    assert cols[centre].all()
    assert int(cols.sum()) == len(set(range(0, 128, 6)) | set(range(128)[centre]))
    again, _ = build_mask_func("uniform", [6], [0.08])((1, 128, 2), seed=99)
    assert torch.equal(mask, again)  # deterministic, whatever the seed


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_fastmri_masks_hit_the_acceleration(kind):
    mask, _ = build_mask_func(kind, [4], [0.08])((1, 320, 2), seed=0)
    assert 320 / 4 * 0.8 < mask.sum() < 320 / 4 * 1.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accelerations": [0], "center_fractions": [0.08]}, "acceleration 0 is invalid"),
        ({"accelerations": [0.5], "center_fractions": [0.08]}, "acceleration 0.5 is invalid"),
        ({"accelerations": [4], "center_fractions": [0.0]}, "center fraction 0.0 is invalid"),
        ({"accelerations": [4], "center_fractions": [1.5]}, "center fraction 1.5 is invalid"),
        ({"accelerations": [4, 8], "center_fractions": [0.08]}, "equal length"),
        ({"mask_type": "spiral", "accelerations": [4], "center_fractions": [0.08]}, "mask type 'spiral' is unknown"),
    ],
)
def test_bad_mask_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(SpadeInputError, match=message):
        build_mask_func(**{"mask_type": "uniform", **kwargs})


def test_native_fft_matches_fastmri():
    import fastmri

    from spade_pl.physics.mri import fft2c, ifft2c

    x = torch.randn(2, 3, 10, 12, 2)
    assert torch.allclose(fft2c(x), fastmri.fft2c(x), atol=1e-5)
    assert torch.allclose(ifft2c(x), fastmri.ifft2c(x), atol=1e-5)


def test_native_order_sense_matches_the_centred_operators_on_odd_and_even_sizes():
    from spade_pl.physics.mri import NativeOrderSENSE, sens_expand, sens_reduce

    for h, w in ((12, 10), (9, 11)):
        k, maps, x = torch.randn(2, 3, h, w, 2), torch.randn(2, 3, h, w, 2), torch.randn(2, h, w, 2)
        mask = torch.rand(2, 1, 1, w, 1) > 0.5
        sense = NativeOrderSENSE(mask, maps)
        assert torch.allclose(sense.reduce(sense.to_native(k)), sens_reduce(k, maps), atol=1e-5)
        assert torch.allclose(sense.to_centred(sense.expand(x)), sens_expand(x, maps), atol=1e-5)
        physics = MultiCoilMRI(mask=mask, maps=maps)
        assert torch.equal(sense.to_centred(sense.apply_mask(sense.to_native(k))), physics.apply_mask(k))
        expected = physics.A_adjoint(physics.A(x) - k)
        assert torch.allclose(sense.normal_residual(x, sense.to_native(k)), expected, atol=1e-5)
