#!/usr/bin/env bash
# Every experiment quoted in README.md, in order (about an hour on a 2-core CPU). Uses a fresh cache
# (embedded data + dense teachers) unless SPADE_PL_CACHE is set, so the first main job's time includes
# building the data and training the teacher; the other strategies reuse that teacher.
set -euo pipefail
cd "$(dirname "$0")"
export SPADE_PL_CACHE=${SPADE_PL_CACHE:-$(mktemp -d)}
# E2E-VarNet fine-tuning ran at network.finetune_lr=1e-3 before commit d72d867 (3e-3 since): every distill and
# supervised run of the embedded default below that is not named *_lr3e-3 ran that way (add the override to
# repeat it as it ran). They ran 10 epochs before commit 6d2e086 (30 since): every E2E-VarNet distill and
# supervised run below the `epochs at lr 3e-3` block that does not set finetune.max_epochs ran 10 (add
# finetune.max_epochs=10). Train-split selfsup ran 10 epochs at lr 1e-3 before commit ea98abf (20 at 3e-3
# since: add finetune.max_epochs=10 finetune.optimizer.lr=1e-3 to those runs; test-time runs with
# finetune.test_time_lr=null used the optimizer's 1e-3 too). Train-split selfsup of the default E2E-VarNet ran
# at 3e-3 without weight averaging from then until commit f25a798 (5e-3 with finetune.ema_decay=0.99 since):
# add finetune.optimizer.lr=3e-3 finetune.ema_decay=null to the runs between. Supervised fine-tuning of the
# default E2E-VarNet ran at 3e-3 until commit c233673 (network.supervised_lr=5e-3 since): add
# finetune.optimizer.lr=3e-3 to the supervised runs above the block that chose 5e-3. Self-supervised fine-tuning
# of the default E2E-VarNet ran at EI weight 5 until commit c31eab0 (network.selfsup_ei_weight=10 since): add
# finetune.objective.ei_weight=5 to the selfsup runs above the block that chose 10; its weight averaging decay was
# 0.99 until commit 3e1449c (0.98 since): add finetune.ema_decay=0.99 to the selfsup runs above the block that chose it.
# It ran 20 epochs until commit 84847e4 (network.selfsup_epochs=30 since): add network.selfsup_epochs=20 to the
# train-split selfsup runs of the default E2E-VarNet that do not set their epochs.
# Timings committed before benchmark.memory_format existed ran in the contiguous layout; their commands below
# say so (benchmark.memory_format=contiguous); the *_auto runs use the default, the layout measured per network.
# paper E2E-VarNet, 320x320, 16 coils: dense vs pruned timing on this CPU (random weights: the time of a
# feed-forward network does not depend on them); then with the sensitivity net pruned too
paper="stage=benchmark network=e2e_varnet_paper benchmark.size=320 benchmark.coils=16 prune.ratio=0.5"
./run_experiment.sh bench_e2e_varnet_paper $paper benchmark.memory_format=contiguous
./run_experiment.sh bench_e2e_varnet_paper_sens $paper prune.include_sensitivity_net=true \
  benchmark.memory_format=contiguous
./run_experiment.sh bench_e2e_varnet_paper_auto $paper
./run_experiment.sh bench_e2e_varnet_paper_sens_auto $paper prune.include_sensitivity_net=true
# hardware-aware widths: the multiple measured fastest (prune.round_to=auto); the first one twice
./run_experiment.sh bench_e2e_varnet_paper_round_auto $paper prune.round_to=auto
./run_experiment.sh bench_e2e_varnet_paper_round_auto_run2 $paper prune.round_to=auto
./run_experiment.sh bench_e2e_varnet_paper_sens_round_auto $paper prune.round_to=auto prune.include_sensitivity_net=true
./run_experiment.sh default_bench_round_auto stage=benchmark prune.ratio=0.5 prune.round_to=auto
# the default network's speed, and sizes considered as a new default (after the instance-norm change)
./run_experiment.sh default_bench_c8 stage=benchmark prune.ratio=0.5
./run_experiment.sh default_bench_c8_run2 stage=benchmark prune.ratio=0.5
./run_experiment.sh default_bench_c8_sens stage=benchmark prune.ratio=0.5 prune.include_sensitivity_net=true
./run_experiment.sh default_bench_c12 stage=benchmark prune.ratio=0.5 network.model.chans=12  # (these two: before
./run_experiment.sh default_bench_c16 stage=benchmark prune.ratio=0.5 network.model.chans=16  # that change)
c16sens="network.model.chans=16 prune.include_sensitivity_net=true"
./run_experiment.sh default_bench_c16_sens stage=benchmark prune.ratio=0.5 $c16sens
./run_experiment.sh default_bench_c16_sens_run2 stage=benchmark prune.ratio=0.5 $c16sens
# the dense network that SPADE turns into the default's shape, and the default on a fastMRI-sized slice
./run_experiment.sh default_bench_c8_s8_sens stage=benchmark prune.ratio=0.5 network.model.chans=8 network.model.sens_chans=8 prune.include_sensitivity_net=true
./run_experiment.sh default_bench_c16_s8_sens stage=benchmark prune.ratio=0.5 network.model.chans=16 network.model.sens_chans=8 prune.include_sensitivity_net=true
./run_experiment.sh default_bench_c8_320 stage=benchmark prune.ratio=0.5 benchmark.size=320 benchmark.coils=16
# what that size costs in quality (validation split, its own teacher: a fresh cache)
(export SPADE_PL_CACHE=$(mktemp -d)
 ./run_experiment.sh val_c16_sens_distill eval_split=val prune.ratio=0.5 $c16sens
 ./run_experiment.sh val_c16_sens_supervised eval_split=val prune.ratio=0.5 $c16sens finetune=supervised)
# the main job at the current code from scratch (commit 29a8643): per seed a fresh cache, so the self-supervised
# job builds the embedded data and trains the teacher (its wall time is the whole job); the others reuse them
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  fresh=$(mktemp -d)
  for strategy in selfsup distill supervised; do
    SPADE_PL_CACHE=$fresh ./run_experiment.sh "current_${strategy}${suffix}" prune.ratio=0.5 finetune="$strategy" \
      seed=$seed network.selfsup_epochs=20  # the default then (selfsup only; the others ignore it)
  done
  SPADE_PL_CACHE=$fresh ./run_experiment.sh "current_selfsup_testtime${suffix}" prune.ratio=0.5 finetune=selfsup \
    finetune.data=test seed=$seed
done
# the 30-epoch default chosen on validation, seed 42 from a fresh cache of its own (the whole job's time), seed 1
# on its cached teacher
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh current_selfsup_30ep prune.ratio=0.5 finetune=selfsup \
  network.selfsup_epochs=30 seed=42
SPADE_PL_CACHE=$fresh ./run_experiment.sh current_selfsup_30ep_seed1 prune.ratio=0.5 finetune=selfsup \
  network.selfsup_epochs=30 seed=1
# the same, run earlier (before commit 75c9c4e), one run per fine-tuning strategy and two seeds (one shared,
# cached teacher per seed)
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  for strategy in distill supervised selfsup; do
    ./run_experiment.sh "main_${strategy}${suffix}" prune.ratio=0.5 finetune="$strategy" seed=$seed
  done
done
# test-time adaptation (finetune.test_time_lr 3e-3, chosen below on validation volumes): seed 42 with the cached
# teacher, seed 1 further down with its own
./run_experiment.sh main_selfsup_testtime prune.ratio=0.5 finetune=selfsup finetune.data=test   # test-time
# how the fine-tuning recipes were chosen: on the validation split (eval_split=val), same cached teacher
val() { ./run_experiment.sh "val_$1" eval_split=val prune.ratio=0.5 "${@:2}"; }
cos="finetune.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:30}"
# (the image-domain rows of README's table, val_selfsup_lr1e-4, _lr1e-3, _lr1e-3_ei10, _lr1e-3_split1, ran at
# commit e17c262, before E2E-VarNet had coil_kspace, with the old selfsup.yaml; their command.txt has the overrides)
val selfsup_coil_lr1e-3 finetune=selfsup finetune.objective.split_weight=0 finetune.objective.ei_weight=1
val selfsup_coil_lr1e-3_split1 finetune=selfsup finetune.objective.ei_weight=1
val selfsup_coil_lr3e-4_split1 finetune=selfsup finetune.objective.ei_weight=1 finetune.optimizer.lr=3e-4
val selfsup_coil_lr1e-3_split1_ei5 finetune=selfsup
val selfsup_coil_lr1e-3_split1_ei20 finetune=selfsup finetune.objective.ei_weight=20
val selfsup_testtime_10ep finetune=selfsup finetune.data=test finetune.test_time_epochs=10 finetune.test_time_lr=null
val selfsup_testtime_30ep finetune=selfsup finetune.data=test finetune.test_time_lr=null
val distill_l1 finetune=distill
val distill_l1_30ep_cos finetune=distill finetune.max_epochs=30 "$cos"
val distill_ssim finetune=distill finetune.objective.loss=ssim
val distill_l1_ssim finetune=distill finetune.objective.loss=l1_ssim
val distill_l1_ssim_30ep_cos finetune=distill finetune.objective.loss=l1_ssim finetune.max_epochs=30 "$cos"
# the same questions on the current code, its own teacher (fresh cache: the first run trains it)
(export SPADE_PL_CACHE=$(mktemp -d)
 val supervised_10ep finetune=supervised
 val supervised_30ep_cos finetune=supervised finetune.max_epochs=30 "$cos"
 val distill_10ep finetune=distill
 val distill_30ep_cos finetune=distill finetune.max_epochs=30 "$cos"
 val c16_distill network.model.chans=16 finetune=distill  # a wider default: its own teacher
 val c16_supervised network.model.chans=16 finetune=supervised
 val distill_cascades1 finetune.objective.cascade_weight=1.0  # every cascade distilled
 # (val_distill_output, the complex outputs distilled, ran at commit 636a202 with finetune.objective.domain=output,
 # an option removed after this run)
 val selfsup_testtime_30ep_lr3e-3 finetune=selfsup finetune.data=test  # test_time_lr 3e-3
 # the fine-tuning rate (network.finetune_lr, 1e-3 in the runs above, 3e-3 since), then the test split once
 val supervised_lr3e-3 finetune=supervised finetune.optimizer.lr=3e-3 finetune.max_epochs=10
 val distill_lr3e-3 finetune=distill finetune.optimizer.lr=3e-3 finetune.max_epochs=10
 ./run_experiment.sh main_distill_lr3e-3 prune.ratio=0.5 finetune=distill finetune.max_epochs=10
 ./run_experiment.sh main_supervised_lr3e-3 prune.ratio=0.5 finetune=supervised finetune.max_epochs=10)
# test-time adaptation on a second seed, its own teacher: the learning rate on validation volumes, then test
(export SPADE_PL_CACHE=$(mktemp -d)
 val selfsup_testtime_30ep_seed1 seed=1 finetune=selfsup finetune.data=test finetune.test_time_lr=null \
   finetune.optimizer.lr=1e-3
 val selfsup_testtime_30ep_lr3e-3_seed1 seed=1 finetune=selfsup finetune.data=test
 ./run_experiment.sh main_selfsup_testtime_seed1 prune.ratio=0.5 finetune=selfsup finetune.data=test seed=1
 ./run_experiment.sh main_distill_lr3e-3_seed1 prune.ratio=0.5 finetune=distill seed=1 finetune.max_epochs=10
 ./run_experiment.sh main_supervised_lr3e-3_seed1 prune.ratio=0.5 finetune=supervised seed=1 \
   finetune.max_epochs=10)
# epochs at lr 3e-3 on the validation split of both seeds (the two cached teachers above), then the test split
# once per seed at the chosen defaults (30 epochs; selfsup 20 epochs at 3e-3)
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "supervised_lr3e-3$suffix" finetune=supervised finetune.max_epochs=10 seed=$seed
  val "distill_lr3e-3$suffix" finetune=distill finetune.max_epochs=10 seed=$seed
  for epochs in 20 30; do
    val "supervised_${epochs}ep$suffix" finetune=supervised finetune.max_epochs=$epochs seed=$seed
    val "distill_${epochs}ep$suffix" finetune=distill finetune.max_epochs=$epochs seed=$seed
  done
done
val selfsup_10ep finetune=selfsup finetune.max_epochs=10 finetune.optimizer.lr=1e-3
val selfsup_lr3e-3 finetune=selfsup finetune.max_epochs=10
val selfsup_lr3e-3_20ep finetune=selfsup
val selfsup_lr3e-3_split2 finetune=selfsup finetune.objective.split_weight=2
val selfsup_20ep_split2 finetune=selfsup finetune.objective.split_weight=2  # with the val terms logged
val selfsup_20ep_terms finetune=selfsup  # the default again, for its val/selfsup_split
# recipes for the last gaps (selfsup SSIM, supervised on seed 1), same objectives, so val/loss compares them:
# cosine annealing, weight averaging (finetune.ema_decay), more epochs, a larger step
cos20="finetune.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:20}"
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  [ $seed = 42 ] || val "selfsup_20ep$suffix" finetune=selfsup finetune.ema_decay=null finetune.optimizer.lr=3e-3 seed=$seed
  val "selfsup_20ep_ema0.99$suffix" finetune=selfsup finetune.ema_decay=0.99 finetune.optimizer.lr=3e-3 seed=$seed
  val "selfsup_20ep_ema0.99_lr5e-3$suffix" finetune=selfsup finetune.ema_decay=0.99 finetune.optimizer.lr=5e-3 seed=$seed
  val "selfsup_20ep_lr5e-3$suffix" finetune=selfsup finetune.ema_decay=null finetune.optimizer.lr=5e-3 seed=$seed
done
val selfsup_20ep_cos finetune=selfsup finetune.ema_decay=null finetune.optimizer.lr=3e-3 "$cos20"
val supervised_40ep_seed1 finetune=supervised finetune.max_epochs=40 seed=1
val supervised_30ep_lr3e-3_cos_seed1 finetune=supervised seed=1 "$cos"
val supervised_30ep_ema0.99_seed1 finetune=supervised finetune.ema_decay=0.99 seed=1
val supervised_30ep_ema0.99 finetune=supervised finetune.ema_decay=0.99
# a squared-error loss and larger steps for supervised fine-tuning, the larger step for distillation, a larger
# self-supervised step (8e-3), both seeds
# (ran before commit c233673, i.e. at 3e-3 unless set here); then the test split once per seed at the chosen 5e-3
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "supervised_30ep_mse$suffix" finetune=supervised finetune.objective.loss=mse finetune.optimizer.lr=3e-3 seed=$seed
  val "supervised_30ep_lr5e-3$suffix" finetune=supervised finetune.optimizer.lr=5e-3 seed=$seed
  val "supervised_30ep_lr1e-2$suffix" finetune=supervised finetune.optimizer.lr=1e-2 seed=$seed
  val "distill_30ep_lr5e-3$suffix" finetune=distill finetune.optimizer.lr=5e-3 seed=$seed
  val "selfsup_20ep_ema0.99_lr8e-3$suffix" finetune=selfsup finetune.optimizer.lr=8e-3 seed=$seed
done
val selfsup_20ep_ema0.995_lr5e-3 finetune=selfsup finetune.ema_decay=0.995  # seed 1 stopped: seed 42 ruled it out
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  ./run_experiment.sh "main_supervised_30ep_lr5e-3$suffix" prune.ratio=0.5 finetune=supervised seed=$seed
done
# the test split once per seed at the chosen self-supervised recipe (20 epochs at 5e-3, weight averaging 0.99)
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  ./run_experiment.sh "main_selfsup_20ep_ema_lr5e-3$suffix" prune.ratio=0.5 finetune=selfsup seed=$seed
done
# (ran as finetune.ema_decay=0.99, before test-time adaptation had its own test_time_ema_decay)
val selfsup_testtime_30ep_ema0.99_seed1 finetune=selfsup finetune.data=test finetune.test_time_ema_decay=0.99 seed=1
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  for strategy in distill supervised; do
    ./run_experiment.sh "main_${strategy}_30ep$suffix" prune.ratio=0.5 finetune=$strategy seed=$seed
  done
  ./run_experiment.sh "main_selfsup_20ep$suffix" prune.ratio=0.5 finetune=selfsup seed=$seed
done
# more EI weight for self-supervised fine-tuning (both seeds), compared without ground truth on the terms that do
# not depend on the weights, 12 splits and every quarter turn per checkpoint; then the test split once per seed
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "selfsup_20ep_ei10$suffix" finetune=selfsup finetune.objective.ei_weight=10 seed=$seed
  val "selfsup_20ep_ei20$suffix" finetune=selfsup finetune.objective.ei_weight=20 seed=$seed
done
mkdir -p results/selfsup_criterion_ei
(cd ../logs/experiments && "${PYTHON:-../../.venv/bin/python}" ../../experiments/selfsup_criterion.py \
  val_selfsup_20ep_{ema0.99_lr5e-3,ei10,ei20}{,_seed1}/checkpoints/finetune-selfsup/best.ckpt) \
  | tee results/selfsup_criterion_ei/table.md
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  ./run_experiment.sh "main_selfsup_20ep_ei10$suffix" prune.ratio=0.5 finetune=selfsup seed=$seed
done
# a shorter weight average at EI weight 10, same objective (val/loss compares), then the test split once per seed
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "selfsup_20ep_ei10_ema0.98$suffix" finetune=selfsup finetune.ema_decay=0.98 seed=$seed
done
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  ./run_experiment.sh "main_selfsup_20ep_ei10_ema0.98$suffix" prune.ratio=0.5 finetune=selfsup seed=$seed
done
# test-time adaptation at EI weight 10 (ran before finetune.test_time_ei_weight existed, i.e. at 10), against
# the test-time rows above (weight 5), on the same weight-free terms
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "selfsup_testtime_30ep_lr3e-3_ei10$suffix" finetune=selfsup finetune.data=test finetune.test_time_ei_weight=10 seed=$seed
done
# 30 epochs after the faster instance-norm backward (commit 75c9c4e), with and without cosine annealing
# (the cosine run's seed 1 stopped: seed 42 ruled it out)
cos30="finetune.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:30}"
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "selfsup_30ep_ei10_ema0.98$suffix" finetune=selfsup network.selfsup_epochs=30 seed=$seed
done
val selfsup_30ep_ei10_ema0.98_cos finetune=selfsup network.selfsup_epochs=30 "$cos30"
# two rotations per step, and a shorter weight average (seed 1 not run: seed 42 ruled each out)
val selfsup_20ep_ei10_ema0.98_nt2 finetune=selfsup \
  'finetune.objective.transform={_target_:spade_pl.finetune.transforms.Rotations,num_transforms:2}'
val selfsup_20ep_ei10_ema0.97 finetune=selfsup finetune.ema_decay=0.97
# a sparsity prior on the magnitude image (these runs passed +finetune.objective.sparsity_weight=1, before the key
# was in the config), then the weight-free terms of each against the default (table.md holds the two seeds' calls)
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  val "selfsup_20ep_sparsity1$suffix" finetune=selfsup finetune.objective.sparsity_weight=1 seed=$seed
done
mkdir -p results/selfsup_criterion_sparsity
(cd ../logs/experiments && "${PYTHON:-../../.venv/bin/python}" ../../experiments/selfsup_criterion.py \
  val_selfsup_30ep_ei10_ema0.98/checkpoints/finetune-selfsup/best.ckpt \
  val_selfsup_20ep_sparsity1/checkpoints/finetune-selfsup/best.ckpt \
  val_selfsup_20ep_ei10_ema0.98_seed1/checkpoints/finetune-selfsup/best.ckpt \
  val_selfsup_20ep_sparsity1_seed1/checkpoints/finetune-selfsup/best.ckpt) \
  | tee results/selfsup_criterion_sparsity/table.md
# L1 errors in the self-supervised objective (finetune.objective.norm=1, network.selfsup_norm since) against the
# squared ones, on another machine (its teacher rounds differently), per seed a fresh cache: both
# trained on the training split and selected on validation, scored there without ground truth, then each
# selected checkpoint and the dense teacher read once on the test split (stage=test)
for seed in 42 1; do
  suffix=$([ $seed = 42 ] || echo "_seed$seed")
  export SPADE_PL_CACHE=$(mktemp -d)
  val "selfsup_current$suffix" finetune=selfsup finetune.objective.norm=2 seed=$seed
  val "selfsup_l1$suffix" finetune=selfsup finetune.objective.norm=1 seed=$seed
  ./run_experiment.sh "test_dense$suffix" stage=test seed=$seed ckpt_path="$(ls "$SPADE_PL_CACHE"/teachers/*/dense.ckpt)"
  for run in selfsup_current selfsup_l1; do
    ./run_experiment.sh "test_$run$suffix" stage=test seed=$seed \
      ckpt_path="logs/experiments/val_$run$suffix/checkpoints/finetune-selfsup/best.ckpt"
  done
  mkdir -p "results/selfsup_criterion_l1$suffix"
  (cd ../logs/experiments && "${PYTHON:-../../.venv/bin/python}" ../../experiments/selfsup_criterion.py \
    --draws "$([ $seed = 42 ] && echo 12 || echo 6)" val_selfsup_{current,l1}$suffix/checkpoints/finetune-selfsup/best.ckpt \
    seed=$seed) | tee "results/selfsup_criterion_l1$suffix/table.md"
  unset SPADE_PL_CACHE
done
# Lightning's simple profiler on the teacher's and the fine-tuning's epochs, before (commit 22ec6a5) and after
# validation stopped running supervised networks twice (results/profile_validation/command.txt has both commands;
# the reports were cut from the logs)
SPADE_PL_CACHE=$(mktemp -d) "${PYTHON:-../.venv/bin/python}" -m spade_pl prune.ratio=0.5 finetune=selfsup \
  finetune.max_epochs=1 +trainer.profiler=simple eval_split=val hydra.run.dir=../logs/experiments/profile_validation
# the default self-supervised job (L1 errors) from scratch, after validation stopped running supervised networks
# twice (commit 22bfeba): its wall time is the whole job, fresh cache
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh current_selfsup_l1 prune.ratio=0.5 finetune=selfsup
# the L1 objective's step and average (same objective, so val/loss compares), seed 42 on the teacher its
# val_selfsup_l1 run trained (run in that seed's cache); seed 1 only for what seed 42 does not rule out
val selfsup_l1_lr1e-2 finetune=selfsup finetune.optimizer.lr=1e-2
val selfsup_l1_lr3e-3 finetune=selfsup finetune.optimizer.lr=3e-3
val selfsup_l1_ema0.99 finetune=selfsup finetune.ema_decay=0.99
# 40 epochs (past the 15 minutes of a job from scratch here), each seed on its cached teacher, then the test split
# read once per selected checkpoint
val selfsup_l1_40ep finetune=selfsup finetune.max_epochs=40
val selfsup_l1_40ep_seed1 finetune=selfsup finetune.max_epochs=40 seed=1
for run in selfsup_l1_40ep selfsup_l1_40ep_seed1; do
  ./run_experiment.sh "test_$run" stage=test "seed=$([ "$run" = selfsup_l1_40ep ] && echo 42 || echo 1)" \
    ckpt_path="logs/experiments/val_$run/checkpoints/finetune-selfsup/best.ckpt"
done
# after the split forward reuses the coil maps (commit 5c27842): the default self-supervised job from scratch on
# both seeds, and with 40 epochs on seed 42, each its own fresh cache (its wall time is the whole job)
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh current_selfsup_l1_reuse prune.ratio=0.5 finetune=selfsup
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh current_selfsup_l1_reuse_seed1 prune.ratio=0.5 finetune=selfsup seed=1
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh current_selfsup_l1_40ep prune.ratio=0.5 finetune=selfsup \
  finetune.max_epochs=40
# the sensitivity net frozen (finetune.frozen_priors), 26 epochs in the time of 20 (seed 1 stopped: seed 42 ruled it out)
val selfsup_26ep_frozen_sens finetune=selfsup 'finetune.frozen_priors=[sens]' finetune.max_epochs=26
mkdir -p results/selfsup_criterion_testtime
(cd ../logs/experiments && "${PYTHON:-../../.venv/bin/python}" ../../experiments/selfsup_criterion.py \
  val_selfsup_testtime_30ep_lr3e-3{,_ei10}{,_seed1}/checkpoints/finetune-selfsup/best.ckpt) \
  | tee results/selfsup_criterion_testtime/table.md
# DEQ: paper configuration timing at 320x320 (iterations reported; same tolerance for both), then the
# DEQ main job on the embedded default
./run_experiment.sh bench_deq_paper stage=benchmark network=deq_paper benchmark.size=320 benchmark.coils=16 \
  prune.ratio=0.5 benchmark.repeats=3 benchmark.warmup=1 benchmark.memory_format=contiguous
./run_experiment.sh main_deq_distill network=deq prune.ratio=0.5 finetune=distill
# the small DEQ's recipe: 2 pre-training epochs, loss and solver tolerance varied
recipe="network=deq prune.ratio=0.5 finetune=none pretrain.max_epochs=2 benchmark.repeats=5 benchmark.warmup=1"
./run_experiment.sh deq_recipe_smoothl1_tol1e-4 $recipe network.loss=smooth_l1 network.model.tol=1e-4 \
  network.model.max_iter=100
./run_experiment.sh deq_recipe_l1_tol1e-4 $recipe network.model.tol=1e-4 network.model.max_iter=100
./run_experiment.sh deq_recipe_l1_tol1e-3 $recipe
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh main_deq_distill_seed1 network=deq prune.ratio=0.5 \
  finetune=distill seed=1  # a second seed, its own fresh cache (the wall time includes the teacher)
# DEQ self-supervised: epochs chosen on validation (fresh cache, the first run trains the teacher), then test
(export SPADE_PL_CACHE=$(mktemp -d)
 deqss="network=deq prune.ratio=0.5 finetune=selfsup"
 ./run_experiment.sh val_deq_selfsup_2ep eval_split=val $deqss finetune.max_epochs=2
 ./run_experiment.sh main_deq_selfsup_2ep $deqss finetune.max_epochs=2
 ./run_experiment.sh val_deq_selfsup_5ep eval_split=val $deqss finetune.max_epochs=5
 ./run_experiment.sh main_deq_selfsup_5ep $deqss finetune.max_epochs=5)
SPADE_PL_CACHE=$(mktemp -d) ./run_experiment.sh main_deq_selfsup_5ep_seed1 network=deq prune.ratio=0.5 \
  finetune=selfsup finetune.max_epochs=5 seed=1  # a second seed, its own teacher (wall time includes it)
# GPU only (where one is visible; PYTHON= the GPU machine's python): the same timings with CUDA events
if "${PYTHON:-../.venv/bin/python}" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  gpu="stage=benchmark benchmark.size=320 benchmark.coils=16 prune.ratio=0.5 benchmark.device=cuda"
  e2e="$gpu network=e2e_varnet_paper benchmark.repeats=50 benchmark.warmup=10"
  # eager vs CUDA graph (benchmark.runtime=auto on a GPU), sensitivity net dense and pruned
  ./run_experiment.sh gpu_e2e_paper_eager $e2e benchmark.runtime=eager
  ./run_experiment.sh gpu_e2e_paper_graph $e2e
  ./run_experiment.sh gpu_e2e_paper_sens_eager $e2e prune.include_sensitivity_net=true benchmark.runtime=eager
  ./run_experiment.sh gpu_e2e_paper_sens_graph $e2e prune.include_sensitivity_net=true
  # hardware-aware widths on the GPU (prune.round_to=auto)
  ./run_experiment.sh gpu_e2e_paper_round_auto $e2e prune.round_to=auto
  ./run_experiment.sh gpu_e2e_paper_sens_round_auto $e2e prune.round_to=auto prune.include_sensitivity_net=true
  # an earlier session's eager runs, before benchmark.runtime existed (today: benchmark.runtime=eager)
  ./run_experiment.sh gpu_bench_e2e_varnet_paper $e2e benchmark.runtime=eager
  ./run_experiment.sh gpu_bench_e2e_varnet_paper_8slices $e2e benchmark.slices=8 benchmark.runtime=eager
  ./run_experiment.sh gpu_bench_e2e_varnet_paper_8slices_tf32 $e2e benchmark.slices=8 allow_tf32=true \
    benchmark.runtime=eager
  deq="$gpu network=deq_paper benchmark.repeats=10 benchmark.warmup=2"
  ./run_experiment.sh gpu_bench_deq_paper $deq
  ./run_experiment.sh gpu_bench_deq_paper_tf32 $deq allow_tf32=true
fi
# the SPADE grid on the embedded default: ratios 0.25/0.5/0.75 x supervised/distill/selfsup, E2E-VarNet, one
# sweep (one teacher, its own fresh cache so the wall time includes it): sweep.md, sweep.csv, pareto.png
grid_cache=$(mktemp -d)
SPADE_PL_CACHE=$grid_cache ./run_experiment.sh grid_e2e_varnet -m experiment=grid
# DEQ self-supervised recipe on the validation split
./run_experiment.sh val_deq_selfsup eval_split=val network=deq prune.ratio=0.5 finetune=selfsup
# super-resolution (problem=sr, x2 Gaussian, embedded images): strategies on the validation split first, then
# the main jobs (one cached teacher), then paper-size dense vs pruned timing
./run_experiment.sh val_sr_distill eval_split=val problem=sr prune.ratio=0.5 finetune=distill
# the SR self-supervised recipe (the first with rotations only, as MRI: finetune.objective.transform={Rotations})
rotations="finetune.objective.transform={_target_:spade_pl.finetune.transforms.Rotations}"
srval() { ./run_experiment.sh "val_sr_$1" eval_split=val problem=sr prune.ratio=0.5 finetune=selfsup "${@:2}"; }
srcos="finetune.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:10}"
srval selfsup "$rotations"
srval selfsup_cos "$rotations" "$srcos"
srval selfsup_lr3e-4 "$rotations" finetune.optimizer.lr=3e-4
srval selfsup_ei1 "$rotations" finetune.objective.ei_weight=1
srval selfsup_rotshift finetune.objective.ei_weight=5  # rotations and shifts: the default group
srval selfsup_rotshift_ei10  # problem.ei_weight=10: the default
srval selfsup_rotshift_ei20 finetune.objective.ei_weight=20
srval selfsup_rotshift_cos finetune.objective.ei_weight=5 "$srcos"
srval selfsup_rotshift_ei10_cos "$srcos"
for strategy in distill supervised selfsup; do
  ./run_experiment.sh "main_sr_${strategy}" problem=sr prune.ratio=0.5 finetune="$strategy"
done
./run_experiment.sh bench_du_sr_paper stage=benchmark problem=sr network=du_sr_paper benchmark.size=256 \
  prune.ratio=0.5 benchmark.memory_format=contiguous
./run_experiment.sh bench_du_sr_paper_auto stage=benchmark problem=sr network=du_sr_paper benchmark.size=256 \
  prune.ratio=0.5
./run_experiment.sh bench_deq_sr_paper stage=benchmark problem=sr network=deq_sr_paper benchmark.size=256 \
  prune.ratio=0.5 benchmark.repeats=3 benchmark.warmup=1 benchmark.memory_format=contiguous
# latency-targeted pruning: the smallest ratio measured to reach 1.5x, paper E2E-VarNet, 320x320, 16 coils
./run_experiment.sh target_e2e_varnet_paper_1.5x stage=benchmark network=e2e_varnet_paper benchmark.size=320 \
  benchmark.coils=16 prune.target_speedup=1.5 benchmark.repeats=5 benchmark.warmup=1 benchmark.memory_format=contiguous
# where the pruned models lose SSIM (validation split): the grid's dense teacher vs its ratio-0.5 supervised job
"${PYTHON:-../.venv/bin/python}" ssim_background.py "$(ls "$grid_cache"/teachers/*/dense.ckpt | head -n 1)" \
  ../logs/experiments/grid_e2e_varnet/3/checkpoints/finetune-supervised/best.ckpt "paths.cache_dir=$grid_cache" \
  | tee results/ssim_background_grid_supervised/table.md
# the two memory layouts of one fastmri U-Net per width (why benchmark.memory_format=auto measures)
"${PYTHON:-../.venv/bin/python}" unet_layout_timing.py 128 3 4,6,8,12,16,24,32 | tee results/unet_layout_128/timings.txt
"${PYTHON:-../.venv/bin/python}" unet_layout_timing.py 320 4 8,9,16,18 | tee results/unet_layout_320/timings.txt
# channels-last instance norm: the two kernels per shape, and the paper network's forward with each
mkdir -p results/instance_norm_kernels
"${PYTHON:-../.venv/bin/python}" instance_norm_kernels.py | tee results/instance_norm_kernels/output.txt
# the same two kernels under autograd, and a training step of the default network with each (commit 75c9c4e)
mkdir -p results/training_step_time
"${PYTHON:-../.venv/bin/python}" training_step_time.py | tee results/training_step_time/output.txt
# eager vs torch.compile on the default network (why benchmark.runtime has no compile)
mkdir -p results/compile_timing
"${PYTHON:-../.venv/bin/python}" compile_timing.py | tee results/compile_timing/timings.txt
