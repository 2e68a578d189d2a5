#!/usr/bin/env bash
# Usage: experiments/run_experiment.sh NAME [-m] [hydra overrides...]
# Runs `python -m spade_pl` ($PYTHON, default .venv/bin/python) with the overrides into
# logs/experiments/NAME and copies the result files (results/benchmark json+md, results.png, the
# Hydra overrides, the log, each training stage's per-epoch metrics as metrics_<stage>.csv) into
# experiments/results/NAME, so every number quoted in README.md comes from a committed command with a
# committed output. With -m (a sweep), every job's files go to experiments/results/NAME/<job>/ and the
# sweep's sweep.md, sweep.csv and pareto.png to experiments/results/NAME/.
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
  for f in results.json results.md results.png benchmark.json benchmark.md target_speedup.json .hydra/overrides.yaml; do
    if [ -f "$1/$f" ]; then cp "$1/$f" "$2"/; fi
  done
  for m in "$1"/csv/pretrain/metrics.csv "$1"/csv/finetune-*/metrics.csv; do  # per-epoch curves of training
    if [ -f "$m" ]; then cp "$m" "$2/metrics_$(basename "$(dirname "$m")").csv"; fi
  done
}
rm -rf "$out"
if [ "$dir_key" = hydra.sweep.dir ]; then
  for job in "$run_dir"/*/; do copy_results "$job" "$out/$(basename "$job")"; done
  cp "$run_dir"/sweep.md "$run_dir"/sweep.csv "$run_dir"/pareto.png "$out"/
else
  copy_results "$run_dir" "$out"
fi
grep -E "^\[|^\|" "$run_dir.log" > "$out"/run.log || true
printf '%s\nwall time: %d s\n' "$0 $name $*" $((SECONDS - start)) > "$out"/command.txt
