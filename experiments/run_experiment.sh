#!/usr/bin/env bash
# Usage: [IMAGES=1] experiments/run_experiment.sh NAME [-m] [hydra overrides...]
# Runs `python -m spade_pl` ($PYTHON, default .venv/bin/python) with the overrides into
# logs/experiments/NAME and copies what makes the run traceable into experiments/results/NAME: the result
# files (results/benchmark json+md), the command and wall time (command.txt), the resolved config
# (config.yaml) and overrides, the commit and library versions and device (environment.txt), the log, and
# each training stage's per-epoch metrics (metrics_<stage>.csv). Images (results.png, pareto.png) only with
# IMAGES=1: commit them only where a page shows them. With -m (a sweep), every job's files go to
# experiments/results/NAME/<job>/ and the sweep's sweep.md and sweep.csv (sweeps of stages that score) to
# experiments/results/NAME/.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
run_dir=logs/experiments/$name
out=experiments/results/$name
rm -rf "$run_dir"
mkdir -p logs/experiments
if [ "${1:-}" = "-m" ]; then dir_key=hydra.sweep.dir; else dir_key=hydra.run.dir; fi
start=$SECONDS
set +e
"${PYTHON:-.venv/bin/python}" -m spade_pl "$@" "$dir_key=$run_dir" 2>&1 | tee "$run_dir.log" | grep --line-buffered -v "it/s"
statuses=("${PIPESTATUS[@]}")
set -e
status=${statuses[0]}
[ "$status" -eq 0 ] || { echo "experiment $name failed (exit $status), see $run_dir.log"; exit "$status"; }
copy_results() {  # copy_results FROM TO: the files a run leaves that README quotes
  mkdir -p "$2"
  for f in results.json results.md benchmark.json benchmark.md target_speedup.json round_to.json \
      reconstructions.json reconstructions.md \
      .hydra/overrides.yaml .hydra/config.yaml; do
    if [ -f "$1/$f" ]; then cp "$1/$f" "$2"/; fi
  done
  if [ "${IMAGES:-0}" = 1 ] && [ -f "$1/results.png" ]; then cp "$1/results.png" "$2"/; fi
  for m in "$1"/csv/pretrain/metrics.csv "$1"/csv/finetune-*/metrics.csv; do  # per-epoch curves of training
    if [ -f "$m" ]; then cp "$m" "$2/metrics_$(basename "$(dirname "$m")").csv"; fi
  done
}
rm -rf "$out"
if [ "$dir_key" = hydra.sweep.dir ]; then
  for job in "$run_dir"/*/; do copy_results "$job" "$out/$(basename "$job")"; done
  for f in sweep.md sweep.csv; do if [ -f "$run_dir/$f" ]; then cp "$run_dir/$f" "$out"/; fi; done
  if [ "${IMAGES:-0}" = 1 ]; then cp "$run_dir"/pareto.png "$out"/; fi
else
  copy_results "$run_dir" "$out"
fi
grep -E "^\[|^\|" "$run_dir.log" > "$out"/run.log || true
printf '%s\nwall time: %d s\n' "$0 $name $*" $((SECONDS - start)) > "$out"/command.txt
{  # what the numbers depend on besides the config: the code, the libraries, the machine
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- src conf || echo ' (with uncommitted changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  "${PYTHON:-.venv/bin/python}" - <<'PY'
import importlib.metadata as md, platform, torch
print("python:", platform.python_version())
for name in ("torch", "lightning", "hydra-core", "torch-pruning", "fastmri", "torchmetrics", "numpy", "h5py", "wandb"):
    try:
        print(f"{name}: {md.version(name)}")
    except md.PackageNotFoundError:
        pass
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"device: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; GPU: {gpu}")
PY
  grep -m1 "model name" /proc/cpuinfo 2>/dev/null | sed 's/.*: /cpu: /' || true
  echo "cores: $(nproc)"
} > "$out"/environment.txt
