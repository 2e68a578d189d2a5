#!/usr/bin/env bash
# Usage: experiments/run_experiment.sh NAME [hydra overrides...]
# Runs `python -m spade_pl` ($PYTHON, default .venv/bin/python) with the overrides into
# logs/experiments/NAME and copies the result files (results/benchmark json+md, results.png, the
# Hydra config, the log) into experiments/results/NAME, so every number quoted in README.md comes
# from a committed command with a committed output.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
run_dir=logs/experiments/$name
rm -rf "$run_dir"
mkdir -p logs/experiments
start=$SECONDS
set +e
"${PYTHON:-.venv/bin/python}" -m spade_pl "$@" hydra.run.dir="$run_dir" 2>&1 | tee "$run_dir.log" | grep --line-buffered -v "it/s"
statuses=("${PIPESTATUS[@]}")
set -e
status=${statuses[0]}
[ "$status" -eq 0 ] || { echo "experiment $name failed (exit $status), see $run_dir.log"; exit "$status"; }
mkdir -p experiments/results/"$name"
for f in results.json results.md results.png benchmark.json benchmark.md .hydra/overrides.yaml; do
  if [ -f "$run_dir/$f" ]; then cp "$run_dir/$f" experiments/results/"$name"/; fi
done
grep -E "^\[|^\|" "$run_dir.log" > experiments/results/"$name"/run.log || true
printf '%s\nwall time: %d s\n' "$0 $name $*" $((SECONDS - start)) > experiments/results/"$name"/command.txt
