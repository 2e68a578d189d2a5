#!/usr/bin/env bash
# Every experiment quoted in README.md, in order (about 45 minutes on a 2-core CPU).
set -euo pipefail
cd "$(dirname "$0")"
# the main job on the embedded default, one per fine-tuning strategy (one shared, cached teacher)
for strategy in distill supervised selfsup; do
  ./run_experiment.sh "main_${strategy}" prune.ratio=0.5 finetune="$strategy"
done
# paper E2E-VarNet, 320x320, 16 coils: dense vs pruned timing on this CPU (random weights: time does not
# depend on them); then with the sensitivity net pruned too
./run_experiment.sh bench_e2e_varnet_paper stage=benchmark network=e2e_varnet_paper benchmark.size=320 \
  benchmark.coils=16 prune.ratio=0.5
./run_experiment.sh bench_e2e_varnet_paper_sens stage=benchmark network=e2e_varnet_paper benchmark.size=320 \
  benchmark.coils=16 prune.ratio=0.5 prune.include_sensitivity_net=true
