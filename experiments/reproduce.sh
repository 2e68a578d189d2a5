#!/usr/bin/env bash
# Re-makes every run the README and the docs' Results page quote, at today's code (about 45 minutes on a
# 2-core CPU), each through run_experiment.sh into experiments/results/NAME (index: results/INDEX.md). A fresh
# cache unless SPADE_PL_CACHE is set, so the first job's wall time includes building the embedded data and
# training its teacher. GPU=1 also runs the GPU benchmarks (needs CUDA).
set -euo pipefail
cd "$(dirname "$0")"
export SPADE_PL_CACHE=${SPADE_PL_CACHE:-$(mktemp -d)}

# the demo (make demo): the small DEQ's main job, two seeds, each training its own teacher
IMAGES=1 ./run_experiment.sh demo_deq network=deq
./run_experiment.sh demo_deq_seed1 network=deq seed=1
# the demo's dense and fine-tuned networks put to work on the embedded test volumes
checkpoint() { python3 -c "import json,sys; print(json.load(open('results/demo_deq/results.json'))[sys.argv[1]])" "$1"; }
./run_experiment.sh reconstruct_demo_dense network=deq stage=reconstruct reconstruct.split=test \
  ckpt_path="$(checkpoint dense_checkpoint)"
./run_experiment.sh reconstruct_demo_pruned_distill network=deq stage=reconstruct reconstruct.split=test \
  ckpt_path="$(checkpoint finetuned_checkpoint)"
# the memory of stage=test at two split sizes
../.venv/bin/python test_split_memory.py results/memory_test_split

# the small default E2E-VarNet's main job (python -m spade_pl)
./run_experiment.sh main_e2e_varnet_distill prune.ratio=0.5 finetune=distill

# super-resolution's main job
./run_experiment.sh main_sr_distill problem=sr prune.ratio=0.5 finetune=distill

# the paper sizes, 320 x 320, 16 coils, dense vs pruned at random weights (a forward's time does not depend on
# them; a DEQ's iterations do, so read its table's iteration counts)
paper="stage=benchmark benchmark.size=320 benchmark.coils=16 prune.ratio=0.5"
./run_experiment.sh bench_e2e_varnet_paper_320 $paper network=e2e_varnet_paper
./run_experiment.sh bench_deq_paper_320 $paper network=deq_paper benchmark.repeats=3 benchmark.warmup=1
# depth and width together: half the cascades (evenly spaced: at random weights no stage matters more) and half
# the channels; then with the sensitivity net pruned too and the widths rounded to the multiple measured fastest
depth="prune.depth=0.5 prune.depth_importance=uniform"
./run_experiment.sh bench_e2e_varnet_paper_320_depth $paper network=e2e_varnet_paper $depth
./run_experiment.sh bench_e2e_varnet_paper_320_depth_sens $paper network=e2e_varnet_paper $depth \
  prune.include_sensitivity_net=true prune.round_to=auto
# the runtime table: the depth-and-width E2E-VarNet and the DEQ in eager, torch.compile, AOTInductor, ONNX Runtime
runtimes="benchmark.runtimes=[compile,aoti,onnxruntime]"
./run_experiment.sh runtimes_e2e_varnet_paper $paper network=e2e_varnet_paper $depth "$runtimes" benchmark.repeats=10
./run_experiment.sh runtimes_deq_paper $paper network=deq_paper benchmark.repeats=3 benchmark.warmup=1 "$runtimes"
# the small default E2E-VarNet on the embedded slice, depth and width together
./run_experiment.sh bench_e2e_varnet_depth stage=benchmark prune.ratio=0.5 $depth

if [ "${GPU:-0}" = 1 ]; then
  ./run_experiment.sh gpu_e2e_paper_graph $paper network=e2e_varnet_paper benchmark.device=cuda \
    benchmark.repeats=50 benchmark.warmup=10
  ./run_experiment.sh gpu_e2e_paper_depth_graph $paper $depth network=e2e_varnet_paper benchmark.device=cuda \
    benchmark.repeats=50 benchmark.warmup=10
  ./run_experiment.sh gpu_bench_deq_paper $paper network=deq_paper benchmark.device=cuda \
    benchmark.repeats=10 benchmark.warmup=2
fi
