import torch

from spade_pl.data.mri.slice_transform import MRISample
from spade_pl.models import E2EVarNet
from spade_pl.physics.mri import MultiCoilMRI


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_e2e_varnet_has_the_reference_parameter_count():
    net = E2EVarNet(num_cascades=8, chans=18, pools=4, sens_chans=8, sens_pools=4)
    assert _count(net) == 20_119_610
    assert _count(net.varnet.sens_net) == 484_898
    assert _count(net.varnet.cascades[0]) == 2_454_339


def test_priors_are_addressable_by_name():
    net = E2EVarNet(num_cascades=3, chans=4, pools=2, sens_chans=2, sens_pools=2)
    priors = net.priors()
    assert list(priors) == ["cascade0", "cascade1", "cascade2", "sens"]
    assert priors["cascade1"] is net.varnet.cascades[1].model.unet
    out_layers = net.prior_output_layers()
    assert all(layer[0].out_channels == 2 for layer in out_layers.values())


def test_forward_returns_a_complex_image_per_slice():
    net = E2EVarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)
    y = torch.randn(2, 4, 32, 32, 2)
    mask = torch.zeros(2, 1, 1, 32, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., 14:18, :] = True
    x = net(y * mask, MultiCoilMRI(mask=mask, num_low_frequencies=torch.tensor([4, 4])))
    assert x.shape == (2, 32, 32, 2) and torch.isfinite(x).all()
    assert MRISample._fields[0] == "masked_kspace"


def test_cascade_step_equals_fastmri_varnet_block():
    from fastmri.models.varnet import NormUnet, VarNetBlock

    from spade_pl.models.varnet.e2e import cascade_step
    from spade_pl.physics.mri import NativeOrderSENSE

    torch.manual_seed(0)
    block = VarNetBlock(NormUnet(4, 2)).eval()
    block.dc_weight.data.fill_(0.7)
    for h, w in ((16, 16), (15, 13)):  # odd sizes: fftshift and ifftshift differ
        k, y, maps = (torch.randn(2, 3, h, w, 2) for _ in range(3))
        mask = torch.rand(2, 1, 1, w, 1) > 0.5
        sense = NativeOrderSENSE(mask, maps)
        with torch.no_grad():
            native = cascade_step(block, sense.to_native(k), sense.to_native(y), sense)
            assert torch.allclose(sense.to_centred(native), block(k, y, mask, maps), atol=1e-5)
        ours = cascade_step(block, sense.to_native(k), sense.to_native(y), sense).square().sum()
        (grad_ours,) = torch.autograd.grad(ours, block.dc_weight)
        (grad_fastmri,) = torch.autograd.grad(block(k, y, mask, maps).square().sum(), block.dc_weight)
        assert torch.allclose(grad_ours, grad_fastmri, rtol=1e-4)  # the learned DC weight trains the same


def test_group_kernel_instance_norm_equals_instance_norm_and_counts_the_same_macs():
    from fastmri.models.unet import Unet

    from spade_pl.models.varnet.instance_norm import GroupKernelInstanceNorm2d, use_group_kernel_instance_norms
    from spade_pl.pruning.counting import count_macs

    torch.manual_seed(0)
    plain = Unet(2, 2, 4, 2)
    fast = use_group_kernel_instance_norms(Unet(2, 2, 4, 2))
    fast.load_state_dict(plain.state_dict())
    norms = [m for m in fast.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(type(m) is GroupKernelInstanceNorm2d for m in norms)
    x = torch.randn(3, 2, 16, 16, requires_grad=True)
    out_plain, out_fast = plain(x), fast(x)
    assert torch.allclose(out_fast, out_plain, atol=1e-5)
    (grad_plain,) = torch.autograd.grad(out_plain.square().sum(), x)
    (grad_fast,) = torch.autograd.grad(out_fast.square().sum(), x)
    assert torch.allclose(grad_fast, grad_plain, atol=1e-4)
    assert count_macs(fast, x) == count_macs(plain, x)
    unbatched = torch.randn(4, 8, 8)
    assert torch.allclose(norms[0](unbatched), torch.nn.InstanceNorm2d(4)(unbatched), atol=1e-5)


def test_channels_last_instance_norm_keeps_the_layout_and_the_values_whichever_kernel_is_measured_faster():
    from spade_pl.models.varnet import instance_norm as norms

    torch.manual_seed(0)
    norm = norms.GroupKernelInstanceNorm2d(5)
    x = (torch.randn(2, 5, 12, 12) * 3 + 1).contiguous(memory_format=torch.channels_last)
    expected = torch.nn.InstanceNorm2d(5)(x.contiguous())
    key = (tuple(x.shape), x.dtype, torch.get_num_threads())
    norms._VIA_CONTIGUOUS.pop(key, None)
    with torch.no_grad():
        assert torch.allclose(norm(x), expected, atol=1e-5) and key not in norms._VIA_CONTIGUOUS  # not timing
    with torch.no_grad(), norms.measured_kernels():
        first = norm(x)  # times both kernels, remembers the faster
        assert key in norms._VIA_CONTIGUOUS
        for via_contiguous in (False, True):  # either choice: same values, channels-last out
            norms._VIA_CONTIGUOUS[key] = via_contiguous
            out = norm(x)
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(first, expected, atol=1e-5)
    other = x[:1].clone(memory_format=torch.channels_last)  # a shape not seen yet: traced, never timed
    with torch.no_grad(), norms.measured_kernels():
        torch.jit.trace(norm, other, check_trace=False)
    assert (tuple(other.shape), other.dtype, torch.get_num_threads()) not in norms._VIA_CONTIGUOUS


def test_channels_last_instance_norm_under_autograd_normalises_a_contiguous_copy(monkeypatch):
    from spade_pl.models.varnet import instance_norm as norms

    torch.manual_seed(0)
    norm = norms.GroupKernelInstanceNorm2d(4)
    x = (torch.randn(2, 4, 12, 12) * 3 + 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    reference = x.detach().contiguous().requires_grad_()
    expected = torch.nn.InstanceNorm2d(4)(reference)
    layouts = []
    kernel = norms._kernel
    monkeypatch.setattr(norms, "_kernel", lambda t, eps: layouts.append(t.is_contiguous()) or kernel(t, eps))
    out = norm(x)
    assert layouts == [True]  # the kernel saw a contiguous copy, never the channels-last tensor
    assert out.is_contiguous(memory_format=torch.channels_last)  # the next convolution keeps its layout
    assert torch.allclose(out, expected, atol=1e-5)
    grad = torch.randn_like(out)
    (grad_ours,) = torch.autograd.grad(out, x, grad)
    (grad_reference,) = torch.autograd.grad(expected, reference, grad)
    assert torch.allclose(grad_ours, grad_reference, atol=1e-5)
    with torch.no_grad():
        norm(x)
    assert layouts == [True, False]  # inference keeps the channels-last kernel (or the measured one)


def test_sensitivity_maps_with_a_known_centre_equal_fastmris_sensitivity_model():
    torch.manual_seed(0)
    net = E2EVarNet(num_cascades=1, chans=4, pools=2, sens_chans=2, sens_pools=2).eval()
    y = torch.randn(2, 4, 24, 20, 2)
    mask = torch.zeros(2, 1, 1, 20, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., 8:13, :] = True
    with torch.no_grad():
        for low in (5, torch.tensor([5, 5]), 4):  # odd, per-slice tensor, even (another centre offset)
            ours = net.estimate_maps(y * mask, MultiCoilMRI(mask=mask, num_low_frequencies=low))
            low_int = int(torch.as_tensor(low).flatten()[0])
            assert torch.equal(ours, net.varnet.sens_net(y * mask, mask, low_int))
