"""The dense-vs-pruned benchmark: batching, per-slice times, solver iterations, bad settings; TF32 switch."""

import copy
import time

import pytest
import torch

from spade_pl.benchmark.inputs import repeat_first_slice, whole_volumes
from spade_pl.benchmark.macs import speedup_cap, speedup_cap_line
from spade_pl.benchmark.memory import peak_memory_bytes
from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.table import benchmark_markdown
from spade_pl.benchmark.timing import benchmark_pair, median_seconds
from spade_pl.benchmark.volumes import benchmark_volumes
from spade_pl.core.errors import SpadeInputError
from spade_pl.data.mri.slice_transform import MRISample
from spade_pl.job.pipeline import use_tf32
from spade_pl.models import DEQ
from spade_pl.models.base import MBDLNetwork
from spade_pl.physics.mri import MultiCoilMRI
from spade_pl.pruning.prune import prune_network
from spade_pl.pruning.settings import PruneSettings
from spade_pl.training.teacher_cache import teacher_key


def _batch(size: int = 16, coils: int = 3, batch: int = 2) -> MRISample:
    torch.manual_seed(0)
    mask = torch.zeros(batch, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::2, :] = True
    maps = torch.randn(batch, coils, size, size, 2) / coils
    y = torch.randn(batch, coils, size, size, 2) * mask
    nlf, target = torch.full((batch,), 4), torch.zeros(batch, size, size)
    return MRISample(y, mask, nlf, target, maps, [f"f{i}" for i in range(batch)], torch.arange(batch))


def test_repeat_first_slice_copies_the_first_slice_into_every_field():
    batch = repeat_first_slice(_batch(batch=2), 3)
    assert batch.masked_kspace.shape[0] == 3 and batch.fname == ["f0"] * 3
    assert torch.equal(batch.masked_kspace[2], batch.masked_kspace[0]) and batch.slice_num.tolist() == [0, 0, 0]


def test_benchmark_reports_per_slice_times_and_the_solver_iterations_of_every_timed_forward():
    batch = _batch()
    dense = DEQ(feats=8, num_blocks=1, max_iter=20, tol=1e-3).eval()
    pruned = copy.deepcopy(dense)
    physics = MultiCoilMRI(mask=batch.mask, maps=batch.maps)
    prune_network(pruned, batch.masked_kspace, physics, PruneSettings(ratio=0.5))
    result = benchmark_pair(dense, pruned, batch, BenchmarkSettings(repeats=2, warmup=1, slices=3, device="cpu"))
    assert result["input_shape"][0] == 3 and result["slices"] == 3
    for name in ("dense", "pruned"):
        assert result[name]["ms_per_slice"] == pytest.approx(result[name]["forward_ms"] / 3)
        iterations = result[name]["solver_iterations"]
        assert 1 <= iterations["min"] <= iterations["median"] <= iterations["max"] <= 20
    text = benchmark_markdown(result)
    assert "whole forward (3 slices)" in text and "solver iterations per forward" in text
    for name in ("dense", "pruned"):  # auto: each network's layout chosen by timing both
        layout = result[name]["memory_format"]
        assert (
            set(layout["candidates_ms"]) == {"contiguous", "channels_last"}
            and layout["chosen"] in layout["candidates_ms"]
        )
        assert layout["relative_difference"] <= 1e-4  # a DEQ: the solver's stopping point may move with the rounding
    assert "priors' memory format" in text
    assert result["runtime"] == "eager" and result["dense"]["runtime"] == {"runtime": "eager"}  # auto on a CPU
    assert "| runtime (output vs eager: max relative difference) | eager | eager |" in text


def test_peak_memory_counts_a_temporary_inside_an_operator_and_not_what_was_allocated_before(capfd):
    held = torch.randn(1 << 20)  # 4 MiB in place before the call: not counted
    mib = 1 << 20

    def temporary_then_small() -> torch.Tensor:
        big = torch.ones(4 * mib // 4)  # 4 MiB, freed before the call returns
        return big[:16].clone() + held[:16]

    peak = peak_memory_bytes(temporary_then_small, torch.device("cpu"))
    assert 4 * mib <= peak < 4 * mib + 4096
    assert peak_memory_bytes(lambda: torch.ones(mib // 4), torch.device("cpu")) == mib
    assert capfd.readouterr().err == ""  # the profiler's own log lines do not reach the user


def test_the_benchmark_reports_peak_memory_and_weights_for_dense_and_pruned():
    batch = _batch(size=32)
    dense = DEQ(feats=16, num_blocks=2, max_iter=5, tol=1e-3).eval()
    pruned = copy.deepcopy(dense)
    prune_network(pruned, batch.masked_kspace, MultiCoilMRI(mask=batch.mask, maps=batch.maps), PruneSettings(ratio=0.5))
    result = benchmark_pair(dense, pruned, batch, BenchmarkSettings(repeats=1, warmup=1, device="cpu"))
    d, p = result["dense"], result["pruned"]
    assert d["weight_bytes"] == 4 * sum(t.numel() for t in dense.parameters()) and p["weight_bytes"] < d["weight_bytes"]
    # a 16-channel 32 x 32 feature map is 64 KiB: the forward holds several; the pruned one narrower ones
    assert d["peak_forward_bytes"] > 64 * 1024 and 0 < p["peak_forward_bytes"] < d["peak_forward_bytes"]
    assert result["memory_ratio"] == pytest.approx(d["peak_forward_bytes"] / p["peak_forward_bytes"])
    assert "| peak memory per forward (eager; activations and output), MiB |" in benchmark_markdown(result)


def test_the_benchmark_leaves_the_process_thread_count_as_it_found_it():
    """A sweep's joblib worker runs the next job in the same process: it must compute as before."""
    batch = _batch()
    dense = DEQ(feats=4, num_blocks=1, max_iter=3).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark_pair(dense, copy.deepcopy(dense), batch, BenchmarkSettings(repeats=1, warmup=0, threads=2))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("field", ["slices", "repeats", "threads"])
def test_bad_benchmark_settings_are_one_line_errors(field):
    with pytest.raises(SpadeInputError, match=f"benchmark.{field}=0 is invalid"):
        BenchmarkSettings(**{field: 0})


def test_an_unknown_memory_format_is_a_one_line_error():
    with pytest.raises(SpadeInputError, match="benchmark.memory_format='nhwc' is unknown; allowed: auto, contiguous"):
        BenchmarkSettings(memory_format="nhwc")


def test_allow_tf32_switches_torch_and_separates_cached_teachers(make_cfg):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        use_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        use_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert teacher_key(make_cfg()) != teacher_key(make_cfg("allow_tf32=true"))


def test_median_seconds_times_each_call_after_the_warm_up():
    calls = []

    def sleep_a_little():
        calls.append(1)
        time.sleep(0.002)

    seconds = median_seconds(sleep_a_little, repeats=5, warmup=2)
    assert len(calls) == 7 and 0.002 <= seconds < 0.5


def test_whole_volumes_batches_each_volumes_slices_in_one():
    slices = [
        _batch(batch=1)._replace(fname=[name], slice_num=torch.tensor([k]))
        for name, k in (("a.h5", 0), ("a.h5", 1), ("a.h5", 2), ("b.h5", 0), ("b.h5", 1))
    ]
    first, second = whole_volumes(slices)
    assert first.fname == ["a.h5"] * 3 and first.slice_num.tolist() == [0, 1, 2]
    assert first.masked_kspace.shape[0] == 3 and torch.equal(first.maps[2], slices[2].maps[0])
    assert second.fname == ["b.h5"] * 2


def test_the_per_volume_line_is_the_median_over_the_test_volumes():
    """Volumes of 1, 3 and 9 slices cost in proportion: the line stands for the median volume, not the first;
    ``benchmark.volumes`` limits how many are timed."""
    volumes = [
        _batch(batch=n)._replace(fname=[name] * n, slice_num=torch.arange(n))
        for name, n in (("a.h5", 1), ("b.h5", 3), ("c.h5", 9))
    ]
    slow = _Sleeper(0.004)
    settings = BenchmarkSettings(repeats=2, warmup=0, device="cpu")
    result = benchmark_volumes(slow, _Sleeper(0.001), volumes, settings)
    assert result["volumes"] == 3 and result["slices"] == 3
    assert [v["slices"] for v in result["per_volume"]] == [1, 3, 9]
    assert result["dense_ms"] == sorted(v["dense_ms"] for v in result["per_volume"])[1]
    two = benchmark_volumes(
        slow, _Sleeper(0.001), volumes, BenchmarkSettings(repeats=2, warmup=0, device="cpu", volumes=2)
    )
    assert two["volumes"] == 2 and [v["slices"] for v in two["per_volume"]] == [1, 3]
    assert "median of 3 volumes, 3 slices in one forward" in benchmark_markdown(
        {**benchmark_pair(slow, slow, volumes[0], settings), "volume": result}
    )


def test_a_deq_volume_runs_slice_by_slice_each_from_the_previous_slices_solution():
    """Identical slices: a warm start begins at the fixed point itself, so every slice after the first is solved
    in one iteration; without warm starts the volume is one batch, every slice from A^H y."""
    torch.manual_seed(0)
    dense = DEQ(feats=4, num_blocks=1, max_iter=30)
    volume = repeat_first_slice(_batch(batch=1), 4)._replace(fname=["v.h5"] * 4, slice_num=torch.arange(4))
    settings = BenchmarkSettings(repeats=2, warmup=0, device="cpu", warm_start=True)
    result = benchmark_volumes(dense, copy.deepcopy(dense), [volume], settings)
    per_slice = result["per_volume"][0]["iterations_per_slice"]
    for name in ("dense", "pruned"):
        assert per_slice[name][0] > 1 and per_slice[name][1:] == [1, 1, 1]
        assert result["iterations_per_slice"][name] == pytest.approx(sum(per_slice[name]) / 4)
    table = benchmark_markdown({**benchmark_pair(dense, dense, volume, settings), "volume": result})
    assert "4 slices one by one in order" in table and "solver iterations per slice, whole test volumes" in table
    batched = benchmark_volumes(dense, dense, [volume], BenchmarkSettings(repeats=2, warmup=0, device="cpu"))
    assert not batched["in_order"] and "iterations_per_slice" not in batched


def _parts(priors: dict[str, int], ffts: int, other: int) -> dict:
    return {
        "macs_forward": sum(priors.values()) + ffts + other,
        "macs_parts": {"priors": priors, "ffts": ffts, "other_layers": other},
    }


def test_the_speedup_cap_counts_what_pruning_left_alone_at_its_dense_cost():
    dense = _parts({"cascade0": 500, "sens": 300}, ffts=150, other=50)
    pruned = _parts({"cascade0": 125, "sens": 300}, ffts=150, other=50)
    cap = speedup_cap({"dense": dense, "pruned": pruned})
    assert cap["untouched_macs"] == {"unpruned prior sens": 300, "FFTs": 150, "other layers": 50}
    assert cap["untouched_share"] == pytest.approx(0.5) and cap["mac_cap"] == pytest.approx(2.0)
    line = speedup_cap_line({"dense": dense, "pruned": pruned})
    assert (
        line.startswith("Speed-up capped at 2.00x") and "(unpruned prior sens 30%, FFTs 15%, other layers 5%)" in line
    )
    everything = _parts({"prior": 900}, ffts=100, other=0)
    assert speedup_cap({"dense": everything, "pruned": _parts({"prior": 200}, 100, 0)})["mac_cap"] == pytest.approx(10)
    assert speedup_cap({"dense": {"macs_forward": 1}, "pruned": {"macs_forward": 1}}) is None  # an old benchmark.json


class _Sleeper(MBDLNetwork):
    """A network whose whole forward takes at least ``seconds``: which one the benchmark times shows in its
    medians, whatever slot or copy the benchmark keeps it in."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.prior = torch.nn.Conv2d(2, 2, 1)

    def forward(self, y, physics):
        time.sleep(self.seconds)
        return physics.from_channels(self.prior(physics.to_channels(physics.A_adjoint(y))))

    def priors(self):
        return {"prior": self.prior}

    def prior_output_layers(self):
        return {"prior": [self.prior]}


def test_the_benchmark_times_the_dense_network_as_dense_and_the_pruned_one_as_pruned():
    batch = _batch(batch=1)
    slow, fast = _Sleeper(0.02), _Sleeper(0.005)
    result = benchmark_pair(slow, fast, batch, BenchmarkSettings(repeats=5, warmup=1, device="cpu", volume=False))
    assert result["dense"]["forward_ms"] >= 20 > result["pruned"]["forward_ms"] >= 5
    assert 2 < result["speedup_forward"] < 4.5  # 20 ms against 5 ms plus the same small compute
    swapped = benchmark_pair(fast, slow, batch, BenchmarkSettings(repeats=5, warmup=1, device="cpu", volume=False))
    assert swapped["speedup_forward"] < 0.5
