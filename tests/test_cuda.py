"""The GPU path: CUDA training, pruning, checkpoints and CUDA-event benchmarks (skipped without a GPU)."""

import copy

import pytest
import torch

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.timing import benchmark_pair
from spade_pl.job.pipeline import run
from spade_pl.models import E2EVarNet
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _tiny_problem() -> tuple[torch.Tensor, MultiCoilMRI]:
    y = torch.randn(1, 4, 32, 32, 2)
    mask = torch.zeros(1, 1, 1, 32, 1, dtype=torch.bool)
    mask[..., ::3, :] = True
    mask[..., 14:18, :] = True
    return y * mask, MultiCoilMRI(mask=mask, num_low_frequencies=4)


def _on(device: str, y: torch.Tensor, physics: MultiCoilMRI) -> tuple[torch.Tensor, MultiCoilMRI]:
    return y.to(device), MultiCoilMRI(mask=physics.mask.to(device), num_low_frequencies=physics.num_low_frequencies)


def test_pruned_network_gives_the_same_output_on_gpu_as_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    net = E2EVarNet(num_cascades=2, chans=8, pools=2, sens_chans=4, sens_pools=2).eval()
    y, physics = _tiny_problem()
    prune_network(net, y, physics, PruneSettings(ratio=0.5))
    with torch.no_grad():
        on_cpu = net(y, physics)
        on_gpu = copy.deepcopy(net).cuda()(*_on("cuda", y, physics))
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)


@pytest.mark.parametrize("runtime", ["eager", "cuda_graph"])
def test_benchmark_times_the_gpu_with_cuda_events(runtime):
    from spade_pl.data.mri.slice_transform import MRISample

    torch.manual_seed(0)
    dense = E2EVarNet(num_cascades=2, chans=8, pools=2, sens_chans=4, sens_pools=2).eval()
    pruned = copy.deepcopy(dense)
    y, physics = _tiny_problem()
    prune_network(pruned, y, physics, PruneSettings(ratio=0.5))
    batch = MRISample(
        y, physics.mask, torch.tensor([4]), torch.zeros(1, 32, 32), torch.empty(0), ["x"], torch.tensor([0])
    )
    settings = BenchmarkSettings(repeats=3, warmup=1, device="cuda", runtime=runtime)
    result = benchmark_pair(dense, pruned, batch, settings)
    assert result["device"] == torch.cuda.get_device_name() and result["runtime"] == runtime
    assert result["dense"]["forward_ms"] > 0 and result["pruned"]["forward_ms"] > 0
    assert result["pruned"]["macs_forward"] < result["dense"]["macs_forward"]
    for name in ("dense", "pruned"):  # a replayed graph computes what eager does
        assert result[name]["runtime"]["runtime"] == runtime
        assert result[name]["runtime"].get("relative_difference", 0) <= 1e-5


def test_an_e2e_varnet_forward_at_a_known_centre_never_waits_for_the_gpu():
    """No device-to-host read inside the forward: what lets it run asynchronously and be a CUDA graph."""
    net = E2EVarNet(num_cascades=2, chans=8, pools=2, sens_chans=4, sens_pools=2).cuda().eval()
    y, physics = _on("cuda", *_tiny_problem())
    with torch.no_grad():
        net(y, physics)  # first call: cuDNN and allocator set-up
        torch.cuda.set_sync_debug_mode("error")
        try:
            net(y, physics)
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    ("network", "finetune", "model"),
    [
        ("e2e_varnet", "distill", "pruned + distill"),
        ("deq", "distill", "pruned + distill"),
        ("e2e_varnet", "selfsup", "pruned + selfsup"),  # rotations, splits and averaging on the GPU
        ("e2e_varnet", "selfsup finetune.data=test", "pruned + selfsup (test-time)"),
    ],
)
def test_main_job_trains_prunes_and_benchmarks_on_gpu(make_cfg, network, finetune, model):
    out = run(
        make_cfg(
            f"network={network}",
            *f"finetune={finetune}".split(),
            "debug=limit",
            "trainer.accelerator=gpu",
            "benchmark.repeats=2",
            "benchmark.warmup=1",
        )
    )
    assert out["benchmark"]["device"] == torch.cuda.get_device_name()
    final = out["models"][model]["mean"]
    assert all(torch.isfinite(torch.tensor(v)) for v in final.values())
