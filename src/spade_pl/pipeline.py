"""The stages of a spade-pl run, driven by the composed Hydra config.

``stage=spade``      the whole job: dense teacher (cached) -> prune -> fine-tune -> test all -> benchmark -> report
``stage=pretrain``   train the dense network
``stage=test``       evaluate ``ckpt_path`` (dense or pruned) on the held-out test split
``stage=prune``      prune the dense ``ckpt_path`` one-shot, write the pruned checkpoint, report the drop
``stage=benchmark``  time dense vs pruned (``ckpt_path`` or random weights) in one process
``stage=export``     write ``ckpt_path`` (dense or pruned) as weights + pruning history, in its library's own
                     format where it has one (fastMRI VarNet), and as a TorchScript file (``export*.py``)

``stage=spade ckpt_path=dense.ckpt`` prunes and fine-tunes a dense model you trained elsewhere;
``resume_from=<run folder or a stage's last.ckpt>`` continues an interrupted job exactly (see ``resume.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from spade_pl.batch import Sample
from spade_pl.benchmark import (
    BenchmarkSettings,
    benchmark_markdown,
    benchmark_pair,
    benchmark_volume,
    first_volume,
    set_layout,
    time_forwards,
)
from spade_pl.checkpoints import SafeCheckpointIO, read_checkpoint
from spade_pl.config_checks import check_config, network_choice
from spade_pl.data.splits import SplitDataModule
from spade_pl.distributed import is_writer, job_scope, place_on_gpus, rank
from spade_pl.errors import SpadeInputError, require
from spade_pl.export import export_network
from spade_pl.export_weights import write_library_format, write_state_dict
from spade_pl.io_utils import atomic_torch_save, atomic_write_json, atomic_write_text, check_writable
from spade_pl.metrics import min_scored_size
from spade_pl.models.base import MBDLNetwork
from spade_pl.module import ReconModule, freeze_priors
from spade_pl.network_weights import check_shapes, find_network_weights
from spade_pl.pruning.callback import SpadePruning
from spade_pl.pruning.spade import PruneSettings, PruningResult, conv_widths, prune_network, replay_structure
from spade_pl.pruning.target import TargetSearch, largest_ratio, smallest_ratio_reaching
from spade_pl.pruning.widths import CANDIDATES, Candidate, WidthChoice, choose_round_to
from spade_pl.report import cost_markdown, pruning_markdown, split_test_results, write_results
from spade_pl.resume import DONE_FILE, ResumeSource, StageCheckpointing, stage_stamp
from spade_pl.seeding import derive_seed
from spade_pl.summary import run_summary, summary_text
from spade_pl.teacher import TeacherCache
from spade_pl.tracking import Tracking, summary_record

log = logging.getLogger(__name__)
TEST_TIME = "test-time"
# finetune.test_time_* settings -> what each replaces in the fine-tuning recipe during test-time adaptation
TEST_TIME_SETTINGS = {
    "test_time_lr": "optimizer.lr",
    "test_time_ei_weight": "objective.ei_weight",
    "test_time_norm": "objective.norm",
}
NO_TRAINING = OmegaConf.create({})


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, but our own input errors surface as themselves (one line), not wrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, SpadeInputError):
            raise err.__cause__ from None
        raise


def weight_averaging(decay: float | None) -> list[Callback]:
    """Fine-tuning with an exponential moving average of the weights (``finetune.ema_decay``; none for
    ``None``): Lightning's callback swaps the average in for validation and into every checkpoint, so
    ``val/loss`` selects among averaged models and the selected checkpoint is one; the average smooths the
    step-to-step noise of a large learning rate, which the self-supervised loss shows most."""
    return [] if decay is None else [EMAWeightAveraging(decay=float(decay))]


class Run:
    """One Hydra run: its config, its output folder, its datamodule (built once, shared by every stage).

    Under DDP every rank builds its own ``Run`` (Lightning re-runs the command per rank) and goes through the
    same stages; only rank 0 (``self.writer``) writes reports, benchmarks, caches and summaries.
    """

    def __init__(self, cfg: DictConfig):
        require(cfg.stage in STAGES, f"stage={cfg.stage!r} is unknown; allowed: {', '.join(STAGES)}")
        self.cfg = cfg
        if cfg.resume_from is not None and Path(cfg.resume_from).is_dir():
            with open_dict(cfg):  # continue in the interrupted run's folder (trainer paths interpolate it)
                cfg.paths.output_dir = str(Path(cfg.resume_from).resolve())
        self.output_dir = Path(cfg.paths.output_dir)
        check_writable(self.output_dir)
        self.writer = is_writer()
        network_class = get_class(cfg.network.model._target_)
        needs_maps = network_choice(cfg) if network_class.needs_maps else None
        self.datamodule: SplitDataModule = build(cfg.data, require_maps=needs_maps)
        self.datamodule.evaluating_on(cfg.get("eval_split", "test"))
        self.datamodule.prepare_data()
        self.datamodule.setup()  # every split's files are checked now, before any training
        self.check_image_size()
        self.prune_settings = PruneSettings.from_config(cfg.prune)
        one_process = cfg.trainer.devices in (1, "auto", None)  # every rank would time, and may choose, its own
        require(
            self.prune_settings.target_speedup is None or one_process,
            f"prune.target_speedup needs one process (trainer.devices={cfg.trainer.devices}): choose the ratio with "
            f"stage=benchmark prune.target_speedup=..., then pass prune.ratio=...",
        )
        require(
            self.prune_settings.round_to != "auto" or one_process,
            f"prune.round_to=auto needs one process (trainer.devices={cfg.trainer.devices}): choose the multiple "
            f"with stage=benchmark prune.round_to=auto, then pass prune.round_to=...",
        )
        self.resume = ResumeSource(cfg.resume_from, self.training_stamps())
        self.tracking = Tracking(cfg, self.output_dir, build)
        self.gpus = place_on_gpus(cfg.trainer.devices, cfg.trainer.accelerator)
        if self.gpus:
            torch.cuda.set_device(self.gpus[0])  # the benchmark and other plain-torch work follow the trainer
        #: best ``val/loss`` (and any other monitored value) of the last training stage, for sweepers
        self.validation: dict[str, float] = {}
        #: what each training stage cost (wall time, epochs, optimizer steps, device), for the report
        self.costs: dict[str, dict[str, Any]] = {}

    def training_stamps(self) -> dict[str, dict[str, Any]]:
        """The training stages this job will run, with the stamp their checkpoints carry (see resume.py)."""
        stages: list[tuple[str, bool]] = []
        if self.cfg.stage == "pretrain":
            stages.append(("pretrain", False))
        elif self.cfg.stage == "spade":
            if not self.cfg.ckpt_path and not TeacherCache(self.cfg.paths.cache_dir, self.cfg).path.is_file():
                stages.append(("pretrain", False))
            if self.prune_settings.prunes and self.cfg.finetune.get("objective"):
                stages.append((f"finetune-{self.cfg.finetune.name}", True))
        return {stage: stage_stamp(stage, self.cfg, pruned) for stage, pruned in stages}

    def check_image_size(self) -> None:
        """The data's images are at least as large as the network takes and the metrics score (one line before
        any training, which would otherwise train into NaN or fail in the first validation)."""
        with torch.random.fork_rng(devices=[]):  # a throwaway network: no random stream of the run moves
            network_min = self.new_network().min_image_size()
        batch = self.datamodule.first_eval_batch()
        problem = self.cfg.problem
        checks = (
            (batch.physics().image_size(batch.y), network_min, network_choice(self.cfg)),
            (
                tuple(batch.target.shape[-2:]),
                min_scored_size(problem.metric_convention, problem.get("metric_border", 0)),
                "scoring",
            ),
        )
        for (height, width), (smallest, why), who in checks:
            require(
                min(height, width) >= smallest,
                f"the {self.datamodule.eval_split} images ({batch.fname[0]}) are {height} x {width} pixels; "
                f"{who} takes at least {smallest} x {smallest}: {why}",
            )

    # ---- building blocks -------------------------------------------------------------------------
    def new_network(self) -> MBDLNetwork:
        return build(self.cfg.network.model)

    def load_network(self, ckpt_path: str | Path) -> tuple[MBDLNetwork, dict[str, Any] | None]:
        """The configured network with the weights of ``ckpt_path`` (any format of :mod:`network_weights`, read
        with the safe loader) and its pruned structure (None if dense); one line says what was loaded."""
        path, network = str(ckpt_path), self.new_network()
        started = time.perf_counter()
        configured = OmegaConf.to_container(self.cfg.network.model, resolve=True)
        checkpoint = read_checkpoint(path)
        weights = find_network_weights(checkpoint, path, network, configured, self.cfg.get("ckpt_prefix"))
        if weights.structure:
            replay_structure(network, weights.structure)
        network.load_state_dict(check_shapes(weights, path, network, configured), strict=True)
        arguments = ", ".join(f"{k}={v}" for k, v in configured.items() if k != "_target_")
        log.info(
            "loaded %s: %s; %s(%s), %s, %s parameters (%.1f s)",
            path,
            weights.source,
            type(network).__name__,
            arguments,
            "pruned" if weights.structure else "dense",
            f"{sum(p.numel() for p in network.parameters()):,}",
            time.perf_counter() - started,
        )
        return network, weights.structure or None

    def new_module(
        self,
        network: MBDLNetwork,
        train_cfg: DictConfig,
        teacher: MBDLNetwork | None = None,
        structure: dict[str, Any] | None = None,
    ) -> ReconModule:
        module = ReconModule(
            network=network,
            objective=build(train_cfg.objective) if train_cfg.get("objective") else None,
            optimizer=build(train_cfg.optimizer) if train_cfg.get("optimizer") else None,
            scheduler=build(train_cfg.scheduler) if train_cfg.get("scheduler") else None,
            metric_convention=self.cfg.problem.metric_convention,
            metric_border=int(self.cfg.problem.get("metric_border", 0)),
            teacher=teacher,
            frozen_priors=tuple(train_cfg.get("frozen_priors") or ()),
        )
        module.pruning_structure = structure
        module.network_config = OmegaConf.to_container(self.cfg.network.model, resolve=True)
        return module

    def trainer(self, stage: str, max_epochs: int = 1, extra_callbacks: list[Callback] | None = None) -> L.Trainer:
        callbacks = list(extra_callbacks or [])
        for name, ccfg in (self.cfg.get("callbacks") or {}).items():
            if ccfg is None:
                continue
            extra = {"dirpath": str(self.output_dir / "checkpoints" / stage)} if name == "model_checkpoint" else {}
            callbacks.append(build(ccfg, **extra))
        placement = {"devices": self.gpus} if self.gpus else {}
        return build(
            self.cfg.trainer,
            max_epochs=max_epochs,
            callbacks=callbacks,
            logger=self.tracking.loggers(stage),
            plugins=[SafeCheckpointIO()],
            **placement,
        )

    def fit(
        self,
        stage: str,
        module: ReconModule,
        max_epochs: int,
        datamodule: SplitDataModule | None = None,
        callbacks: list[Callback] | None = None,
    ) -> Path:
        """Train ``module``; return the checkpoint of the selected (best by ``val/loss``, else last) model.

        In a resumed run folder a finished stage is not trained again, and an interrupted one continues."""
        stage_dir = self.output_dir / "checkpoints" / stage
        done = self.resume.stage_folder_done(stage_dir)
        if done is not None:
            record = json.loads(done.read_text())
            require(Path(record["checkpoint"]).is_file(), f"{done} names a checkpoint that is gone; rerun the stage")
            self.validation = record["validation"]
            self.costs[stage] = record.get("cost", {})
            log.info("[%s] finished before the interruption: reusing %s", stage, record["checkpoint"])
            return Path(record["checkpoint"])
        resume = self.resume.checkpoint_for(stage, stage_dir)
        log.info("[%s] training for %d epoch(s), output in %s", stage, max_epochs, self.output_dir)
        if resume is not None:
            log.info("[%s] resuming from %s", stage, resume)
        stamp = stage_stamp(stage, self.cfg, pruned=module.pruning_structure is not None)
        trainer = self.trainer(stage, max_epochs, [StageCheckpointing(stamp, self.cfg.seed), *(callbacks or [])])
        started = time.perf_counter()
        try:
            trainer.fit(module, datamodule=datamodule or self.datamodule, ckpt_path=resume, weights_only=True)
        finally:
            self.tracking.finish()
        self.costs[stage] = {
            "wall_s": time.perf_counter() - started,  # this process's part, when the stage was resumed
            "epochs": trainer.current_epoch,
            "optimizer_steps": trainer.global_step,
            "device": str(trainer.strategy.root_device),
            "devices": trainer.num_devices,
        }
        final = stage_dir / "final.ckpt"
        trainer.save_checkpoint(final, weights_only=False)  # the full training state, optimizer and loops too
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = Path(checkpoint.best_model_path) if checkpoint is not None and checkpoint.best_model_path else None
        selected = best if best is not None and best.is_file() else final
        if checkpoint is not None and checkpoint.best_model_score is not None:
            self.validation = {checkpoint.monitor: float(checkpoint.best_model_score)}
        if self.writer:
            record = {"checkpoint": str(selected), "validation": self.validation, "cost": self.costs[stage]}
            atomic_write_json(stage_dir / DONE_FILE, record)
        log.info("[%s] done; selected checkpoint %s", stage, selected)
        return selected

    def test(
        self, name: str, network: MBDLNetwork, callbacks: list[Callback] | None = None, save_to: Path | None = None
    ) -> ReconModule:
        """Evaluate ``network`` on the test split (``module.test_results``); optionally save it afterwards.

        The results are kept in ``tests/<name>.pt``; a resumed run reuses them instead of evaluating again
        (not for a test that also prunes through ``callbacks``: its network is needed, not only its scores)."""
        stage = f"test-{name.replace(' ', '_')}"
        module = self.new_module(network, NO_TRAINING)
        kept = self.output_dir / "tests" / f"{stage}.pt"
        if self.resume.folder is not None and kept.is_file() and not callbacks:
            stored = read_checkpoint(kept)
            module.test_results = stored["results"]
            module.example = {k: v.numpy() for k, v in stored["example"].items()}
            log.info("[test] %s was evaluated before the interruption: reusing %s", name, kept)
            return module
        log.info("[test] evaluating %s on the held-out %s volumes", name, self.datamodule.eval_split)
        trainer = self.trainer(stage, extra_callbacks=callbacks)
        try:
            trainer.test(module, datamodule=self.datamodule, verbose=False)
        finally:
            self.tracking.finish()
        if save_to is not None:
            trainer.save_checkpoint(save_to, weights_only=False)
        if self.writer:
            example = {k: torch.from_numpy(v) for k, v in module.example.items()}
            atomic_torch_save(kept, {"results": module.test_results, "example": example})
        return module

    # ---- the dense teacher -------------------------------------------------------------------------
    def dense_checkpoint(self) -> Path:
        """``ckpt_path`` if given, else the cached dense teacher for this config, trained once if allowed."""
        if self.cfg.ckpt_path:
            return Path(self.cfg.ckpt_path)
        cache = TeacherCache(self.cfg.paths.cache_dir, self.cfg)
        path = cache.get_or_train(
            self.pretrain, allowed=self.cfg.pretrain.train_if_missing, run_id=str(self.output_dir), rank=rank()
        )
        cost_file = cache.folder / "cost.json"  # what training the shared teacher cost, for every job reusing it
        if "pretrain" in self.costs and self.writer:
            atomic_write_json(cost_file, self.costs["pretrain"])
        elif cost_file.is_file():
            self.costs["pretrain"] = {**json.loads(cost_file.read_text()), "cached": True}
        return path

    def dense_network(self, path: Path) -> MBDLNetwork:
        network, structure = self.load_network(path)
        require(structure is None, f"checkpoint {path} is already pruned; this stage needs the dense model")
        return network

    # ---- stages ------------------------------------------------------------------------------------
    def pretrain(self) -> Path:
        return self.fit(
            "pretrain", self.new_module(self.new_network(), self.cfg.pretrain), self.cfg.pretrain.max_epochs
        )

    def prune_one_shot(self, dense: MBDLNetwork) -> tuple[ReconModule, PruningResult, Path]:
        """Prune a copy of ``dense`` (the callback, on a real val batch), test it, save the pruned checkpoint."""
        callback = SpadePruning(self.prune_settings)
        path = self.output_dir / "checkpoints" / "prune" / "pruned.ckpt"
        module = self.test("pruned (one-shot)", copy.deepcopy(dense), callbacks=[callback], save_to=path)
        log.info("[prune] wrote the pruned checkpoint %s", path)
        return module, callback.result, path

    def finetune(self, pruned: ReconModule, teacher: MBDLNetwork) -> tuple[MBDLNetwork, Path]:
        """Fine-tune a copy of the pruned network on the training split, or, for test-time adaptation
        (``finetune.data=test``), on the measurements of the test split (never its ground truth)."""
        name = self.cfg.finetune.name
        recipe = self.test_time_recipe() if self.adapts_to_test() else self.cfg.finetune
        start = (
            self.fresh_network(pruned.pruning_structure)
            if recipe.get("init", "pruned") == "scratch"
            else copy.deepcopy(pruned.network)
        )
        module = self.new_module(start, recipe, teacher=teacher, structure=pruned.pruning_structure)
        datamodule, epochs = None, self.cfg.finetune.max_epochs
        if recipe.get("budget", "finetune") == "total":  # the teacher's epochs too: equal total compute
            epochs += self.cfg.pretrain.max_epochs
        if self.adapts_to_test():
            require(
                not module.objective.uses_ground_truth,
                f"finetune.data=test adapts to the test split's measurements, and finetune={name} would read its "
                f"ground truth; allowed with finetune=distill or finetune=selfsup",
            )
            datamodule = self.datamodule.fitting_on(self.datamodule.eval_split)
            epochs = self.cfg.finetune.get("test_time_epochs") or epochs
        ckpt = self.fit(f"finetune-{name}", module, epochs, datamodule, weight_averaging(recipe.get("ema_decay")))
        return self.load_network(ckpt)[0], ckpt

    def fresh_network(self, structure: dict[str, Any]) -> MBDLNetwork:
        """The pruned architecture with a fresh initialisation (``finetune.init=scratch``: the from-scratch
        baselines), drawn from a seed of its own so that it is neither the teacher's initialisation nor moved by
        what ran before."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.cfg.seed, "scratch"))
            return replay_structure(self.new_network(), structure)

    def test_time_recipe(self) -> DictConfig:
        """``finetune`` with each ``finetune.test_time_*`` setting that is not null in place of the recipe's
        own (:data:`TEST_TIME_SETTINGS`) and ``finetune.test_time_ema_decay`` as its weight averaging: adapting
        to a few test volumes from the one-shot pruned start wants another step size than the training split,
        predicts held-out columns worse with the EI weight chosen for the training split, and its few hundred
        steps leave an average that lags behind (the runs: experiments/LOG.md)."""
        recipe = OmegaConf.create(OmegaConf.to_container(self.cfg.finetune, resolve=True))
        for key, target in TEST_TIME_SETTINGS.items():
            if recipe.get(key) is not None:
                OmegaConf.update(recipe, target, recipe[key])
        recipe.ema_decay = recipe.get("test_time_ema_decay")
        return recipe

    def adapts_to_test(self) -> bool:
        return self.cfg.finetune.get("data", "train") == "test"  # train | test, checked in config_checks

    def finetuned_name(self) -> str:
        """How reports name the fine-tuned model; test-time adaptation is labelled as such everywhere."""
        suffix = f" ({TEST_TIME})" if self.adapts_to_test() else ""
        return (self.cfg.finetune.get("label") or f"pruned + {self.cfg.finetune.name}") + suffix

    def benchmark(
        self, dense: MBDLNetwork, pruned: MBDLNetwork, extra: dict[str, Any] | None = None, preface: str = ""
    ) -> dict[str, Any] | None:
        """Time dense vs pruned (rank 0 only: the other ranks' numbers would be neither needed nor fair);
        ``extra`` / ``preface`` (the latency-target search) go into benchmark.json / benchmark.md too."""
        if not self.writer:
            return None
        settings = BenchmarkSettings(**self.cfg.benchmark)
        log.info("[benchmark] dense vs pruned, %d repetitions after %d warm-up", settings.repeats, settings.warmup)
        result = {**benchmark_pair(dense, pruned, self.benchmark_batch(settings), settings), **(extra or {})}
        if settings.volume and settings.size is None:
            volume = first_volume(self.datamodule.test_dataloader())
            if volume.y.shape[0] > 1:  # single images (super-resolution) have no volume to batch
                log.info(
                    "[benchmark] dense vs pruned on the %d slices of %s in one forward",
                    len(volume.fname),
                    volume.fname[0],
                )
                result["volume"] = benchmark_volume(dense, pruned, volume, settings)
        atomic_write_json(self.output_dir / "benchmark.json", result)
        text = preface.lstrip("\n") + benchmark_markdown(result)
        atomic_write_text(self.output_dir / "benchmark.md", text)
        print("\n" + text, flush=True)
        return result

    def benchmark_batch(self, settings: BenchmarkSettings) -> Sample:
        """The first test slice, or a synthetic ``benchmark.size`` slice."""
        if settings.size is None:
            return next(iter(self.datamodule.test_dataloader()))
        return self.datamodule.synthetic_batch(settings.size, settings.coils)

    def choose_structure(self, dense: MBDLNetwork, extra: dict[str, Any]) -> str:
        """The measured choices of the pruned structure (``prune.target_speedup``, ``prune.round_to=auto``),
        into ``self.prune_settings`` and the results (``extra``); returns the report's paragraphs."""
        settings = BenchmarkSettings(**self.cfg.benchmark)
        device = str(settings.torch_device())
        markdown = ""
        search = self.choose_ratio(dense, settings)
        if search is not None:
            extra["target_speedup"] = search.as_dict()
            markdown += search.markdown(device)
        widths = self.choose_widths(dense, settings)
        if widths is not None:
            extra["round_to"] = widths.as_dict()
            markdown += widths.markdown(device)
        return markdown

    def _measured_once(self, filename: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A measured choice, or, in a resumed run, the one its folder made (timing noise must not change the
        pruned structure of a run half done)."""
        chosen = self.output_dir / filename
        if self.resume.folder is not None and chosen.is_file():
            return json.loads(chosen.read_text())
        result = measure()
        atomic_write_json(chosen, result)
        return result

    def _pruned_copy(self, dense: MBDLNetwork, batch: Sample, **settings: Any) -> tuple[MBDLNetwork, PruningResult]:
        pruned = copy.deepcopy(dense)
        return pruned, prune_network(pruned, batch.y, batch.physics(), replace(self.prune_settings, **settings))

    def choose_ratio(self, dense: MBDLNetwork, settings: BenchmarkSettings) -> TargetSearch | None:
        """``prune.target_speedup``: the ratio measured to reach it on this device, used from here on."""
        target = self.prune_settings.target_speedup
        if target is None:
            return None

        def search() -> dict[str, Any]:
            batch = self.benchmark_batch(settings)

            def speedup_at(ratio: float) -> float:
                return benchmark_pair(dense, self._pruned_copy(dense, batch, ratio=ratio)[0], batch, settings)[
                    "speedup_forward"
                ]

            log.info("[prune] choosing the ratio that reaches %.2fx on this device, by measurement", target)
            widths = [
                width
                for name in self.prune_settings.prior_names(dense)
                for width in conv_widths(dense.priors()[name], dense.prior_output_layers()[name])
            ]
            return smallest_ratio_reaching(target, speedup_at, largest_ratio(widths)).as_dict()

        chosen = TargetSearch(**self._measured_once("target_speedup.json", search))
        self.prune_settings = replace(self.prune_settings, ratio=chosen.ratio)
        return chosen

    def choose_widths(self, dense: MBDLNetwork, settings: BenchmarkSettings) -> WidthChoice | None:
        """``prune.round_to=auto``: the multiple measured fastest on this device, used from here on."""
        if self.prune_settings.round_to != "auto" or not self.prune_settings.prunes:
            return None

        def measure() -> dict[str, Any]:
            batch = self.benchmark_batch(settings)
            networks, candidates = {}, []
            for multiple in CANDIDATES:
                try:
                    pruned, result = self._pruned_copy(dense, batch, round_to=multiple if multiple > 1 else None)
                except SpadeInputError as err:  # it would empty a group: too coarse for these widths
                    log.info("[prune] round_to=%d skipped: %s", multiple, err)
                    continue
                networks[multiple] = pruned
                widths = {name: rep.widths_after for name, rep in result.reports.items()}
                macs = sum(rep.macs_after for rep in result.reports.values())
                candidates.append(Candidate(multiple, widths, macs))
            log.info("[prune] choosing round_to among %s on this device, by measurement", list(networks))

            def time_all(multiples: list[int]) -> dict[int, float]:
                return time_forwards({m: networks[m] for m in multiples}, batch, settings)

            return choose_round_to(candidates, time_all).as_dict()

        chosen = WidthChoice.from_dict(self._measured_once("round_to.json", measure))
        self.prune_settings = replace(self.prune_settings, round_to=chosen.round_to if chosen.round_to > 1 else None)
        return chosen

    def export(self, network: MBDLNetwork, structure: dict[str, Any] | None) -> dict[str, Any]:
        """Write ``export/``: the weights with their pruning history (``state_dict.pt``), the network in its own
        library's format where it has one, and a TorchScript trace (first test slice, checked on the second);
        one line per file, or why it was not written, and ``export.json`` with all of it."""
        folder = self.output_dir / "export"
        folder.mkdir(parents=True, exist_ok=True)
        config = OmegaConf.to_container(self.cfg.network.model, resolve=True)
        record: dict[str, Any] = {"state_dict": write_state_dict(network, structure, config, folder)}
        lines = [f"wrote {record['state_dict']['file']} (weights and pruning history; docs: Export)"]
        library = write_library_format(network, folder)
        if library is not None:
            record["library_format"] = library
            if "file" in library:
                arguments = ", ".join(f"{k}={v}" for k, v in library["arguments"].items())
                lines.append(f"wrote {library['file']}: a plain state_dict of {library['constructor']}({arguments})")
            else:
                lines.append(f"not written, the network's own library format: {library['not_written']}")
        try:
            record["torchscript"] = self.trace(network, folder)
            trace = record["torchscript"]
            lines.append(
                f"wrote {trace['artifact']} (TorchScript, {trace['parameters']:,} parameters; max |artifact - "
                f"checkpoint| {trace['max_abs_error']['example']:.1e} on the example, "
                f"{trace['max_abs_error']['check']:.1e} on a second slice); inputs: "
                + ", ".join(f"{k} {v['shape']}" for k, v in trace["inputs"].items())
            )
        except SpadeInputError as err:
            record["torchscript"] = {"not_written": str(err)}
            lines.append(f"not written, TorchScript: {err}")
        atomic_write_json(folder / "export.json", record)
        print("\n" + "\n".join(lines), flush=True)
        return record

    def trace(self, network: MBDLNetwork, folder: Path) -> dict[str, Any]:
        """The TorchScript export: traced on the first test slice, checked on the second (same acquisition)."""
        slices = iter(self.datamodule.test_dataloader())
        example = next(slices)
        check = next(slices, example)
        layout = set_layout(network, example.y, example.physics(), BenchmarkSettings(**self.cfg.benchmark))
        log.info(
            "[export] tracing %s on %s slice %d, priors %s",
            type(network).__name__,
            example.fname[0],
            example.slice_num[0],
            layout["chosen"],
        )
        return export_network(network, (example.y, example.physics()), (check.y, check.physics()), folder, layout)

    def report(
        self, tested: dict[str, ReconModule], extra: dict[str, Any] | None = None, extra_markdown: str = ""
    ) -> dict[str, Any]:
        """Combine test results of several models (zero-filled taken from the first) and write them out."""
        first = next(iter(tested.values())).test_results
        results: dict[str, Any] = {
            "stage": self.cfg.stage,
            "split": self.datamodule.eval_split,
            "convention": first["convention"],
            "num_volumes": len(first["per_volume"]),
            "seed": self.cfg.seed,
            # the job's own overrides (a sweep's axes): collect groups the jobs that differ only in seed
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
            "models": {
                self.cfg.problem.get("baseline", "zero-filled"): split_test_results(first)[0],
                **{n: split_test_results(m.test_results)[1] for n, m in tested.items()},
            },
            **(extra or {}),
        }
        if conditions := self.datamodule.evaluation_conditions():
            results["transfer"] = conditions
        if self.validation:
            results["validation"] = self.validation
        if summary := run_summary(results):
            results["summary"] = summary
            extra_markdown += "\n" + summary_text(summary)
        if not self.writer:
            return results
        examples = {name: module.example for name, module in tested.items() if module.example}
        text = write_results(self.output_dir, results, extra_markdown, examples)
        self.tracking.log_summary(summary_record(results), self.output_dir / "results.png")
        print("\n" + text, flush=True)
        log.info("[report] wrote %s/results.{json,md,png}", self.output_dir)
        return results


def run_spade(r: Run) -> dict[str, Any]:
    """dense teacher -> one-shot prune -> fine-tune -> benchmark -> report."""
    dense_path = r.dense_checkpoint()
    dense = r.dense_network(dense_path)
    tested = {"dense": r.test("dense", dense)}
    extra: dict[str, Any] = {"dense_checkpoint": str(dense_path)}
    markdown = r.choose_structure(dense, extra)
    extra["prune"] = r.prune_settings.as_dict()
    if r.prune_settings.prunes:
        pruned, pruning, pruned_path = r.prune_one_shot(dense)
        extra["pruned_checkpoint"] = str(pruned_path)
        tested["pruned (one-shot)"] = pruned
        extra["pruning"] = pruning_summary(pruning)
        extra["network_params"] = list(pruning.network_params)
        markdown += "\n" + pruning_markdown(pruning.reports, pruning.network_params)
        r.costs["prune"] = {"wall_s": pruning.seconds}
        final = pruned.network
        if r.cfg.finetune.get("objective"):
            final, ckpt = r.finetune(pruned, teacher=dense)
            extra.update(finetuned_checkpoint=str(ckpt), finetuned_model=r.finetuned_name())
            extra["strategy"] = r.cfg.finetune.name
            tested[r.finetuned_name()] = r.test(r.finetuned_name(), final)
            if r.adapts_to_test():
                markdown += (
                    f"\n{TEST_TIME}: the pruned network was fine-tuned on the measurements of the very volumes it is "
                    f"scored on (scan-specific adaptation, the SPADE paper's protocol; no ground truth read).\n"
                )
        bench = r.benchmark(dense, final)
        if bench is not None:
            extra["benchmark"] = bench
            markdown += "\n" + benchmark_markdown(bench)
    if r.costs:
        extra["cost"] = r.costs
        markdown += "\n" + cost_markdown(r.costs)
    return r.report(tested, extra, markdown)


def pruning_summary(result: PruningResult) -> dict[str, Any]:
    return {name: vars(rep) for name, rep in result.reports.items()}


def use_tf32(allowed: bool) -> None:
    """TF32 tensor-core math for float32 matmuls and cuDNN convolutions (Ampere and newer GPUs) on or off."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.stage``; returns what it produced (checkpoint paths and/or results)."""
    with job_scope():
        return run_stage(cfg)


def run_stage(cfg: DictConfig) -> dict[str, Any]:
    check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    use_tf32(bool(cfg.allow_tf32))
    r = Run(cfg)
    if frozen := (cfg.get("finetune") or {}).get("frozen_priors"):
        with torch.random.fork_rng(devices=[]):  # checked on a throwaway network: no random stream moves
            freeze_priors(r.new_network(), frozen)  # a name the network lacks stops the run before any training
    return STAGES[cfg.stage](r)


def stage_pretrain(r: Run) -> dict[str, Any]:
    """Train the dense network; returns its checkpoint."""
    return {"checkpoint": str(r.pretrain())}


def stage_test(r: Run) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` (dense or pruned) on the held-out split."""
    require(r.cfg.ckpt_path is not None, "stage=test needs ckpt_path=/path/to/model.ckpt")
    return r.report({"model": r.test("model", r.load_network(r.cfg.ckpt_path)[0])})


def stage_export(r: Run) -> dict[str, Any]:
    """Write ``ckpt_path`` as weights + pruning history, its library's format and TorchScript."""
    require(r.cfg.ckpt_path is not None, "stage=export needs ckpt_path=/path/to/model.ckpt (dense or pruned)")
    return r.export(*r.load_network(r.cfg.ckpt_path)) if r.writer else {}


def _dense_and_structure(r: Run) -> tuple[MBDLNetwork, dict[str, Any], str]:
    """The dense network of ``ckpt_path`` (random weights without one, for ``benchmark``) and the measured
    structure choices (``prune.target_speedup``, ``round_to=auto``) with their report paragraphs."""
    require(
        r.cfg.ckpt_path is not None or r.cfg.stage == "benchmark",
        f"stage={r.cfg.stage} needs ckpt_path=/path/to/dense.ckpt",
    )
    dense = r.dense_network(Path(r.cfg.ckpt_path)) if r.cfg.ckpt_path else r.new_network()
    extra: dict[str, Any] = {}
    markdown = r.choose_structure(dense, extra)
    return dense, extra, markdown


def stage_prune(r: Run) -> dict[str, Any]:
    """Prune the dense ``ckpt_path`` one-shot, write the pruned checkpoint, report the drop."""
    dense, extra, markdown = _dense_and_structure(r)
    pruned, pruning, path = r.prune_one_shot(dense)
    markdown += "\n" + pruning_markdown(pruning.reports, pruning.network_params)
    return r.report(
        {"dense": r.test("dense", dense), "pruned (one-shot)": pruned},
        {
            **extra,
            "pruned_checkpoint": str(path),
            "pruning": pruning_summary(pruning),
            "network_params": list(pruning.network_params),
        },
        markdown,
    )


def stage_benchmark(r: Run) -> dict[str, Any]:
    """Prune a copy of the dense network on one real batch, then time both in this process."""
    dense, extra, markdown = _dense_and_structure(r)
    batch = next(iter(r.datamodule.val_dataloader()))  # the datamodule was set up when the run started
    pruned = copy.deepcopy(dense)
    prune_network(pruned, batch.y, batch.physics(), r.prune_settings)
    return r.benchmark(dense, pruned, extra, markdown) or {}


#: ``stage=<name>`` -> what it runs; adding a stage is one function of a :class:`Run` and one entry here
STAGES: dict[str, Callable[[Run], dict[str, Any]]] = {
    "spade": run_spade,
    "pretrain": stage_pretrain,
    "test": stage_test,
    "prune": stage_prune,
    "benchmark": stage_benchmark,
    "export": stage_export,
}
