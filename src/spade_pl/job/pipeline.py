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
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from spade_pl.benchmark.settings import BenchmarkSettings
from spade_pl.benchmark.table import benchmark_markdown
from spade_pl.core.atomic_io import atomic_write_json, check_writable
from spade_pl.core.distributed import is_writer, job_scope, rank
from spade_pl.core.errors import require
from spade_pl.data.splits import SplitDataModule
from spade_pl.job.preflight import check_config, network_choice
from spade_pl.job.stages.benchmark import benchmark_and_write, benchmark_batch
from spade_pl.job.stages.export import write_export
from spade_pl.job.stages.finetune import TEST_TIME, adapts_to_test, finetune, finetuned_name
from spade_pl.job.stages.structure_search import StructureSearch
from spade_pl.models.base import MBDLNetwork
from spade_pl.pruning.callback import SpadePruning
from spade_pl.pruning.prune import PruningResult, prune_network, replay_structure
from spade_pl.pruning.settings import PruneSettings
from spade_pl.reporting.metrics import min_scored_size
from spade_pl.reporting.report import cost_markdown, pruning_markdown, split_test_results, write_results
from spade_pl.reporting.summary import run_summary, summary_text
from spade_pl.training.lightning_module import ReconModule, freeze_priors
from spade_pl.training.resume import ResumeSource, stage_stamp
from spade_pl.training.teacher_cache import TeacherCache
from spade_pl.training.tracking import summary_record
from spade_pl.training.trainers import Training, build
from spade_pl.weights.checkpoint_files import read_checkpoint
from spade_pl.weights.load import check_shapes, find_network_weights

log = logging.getLogger(__name__)


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
        #: trainers, resume-aware fit and test, what each stage cost (:mod:`spade_pl.training.trainers`)
        self.training = Training(cfg, self.output_dir, self.datamodule, self.resume, self.writer)

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
        if "pretrain" in self.training.costs and self.writer:
            atomic_write_json(cost_file, self.training.costs["pretrain"])
        elif cost_file.is_file():
            self.training.costs["pretrain"] = {**json.loads(cost_file.read_text()), "cached": True}
        return path

    def dense_network(self, path: Path) -> MBDLNetwork:
        network, structure = self.load_network(path)
        require(structure is None, f"checkpoint {path} is already pruned; this stage needs the dense model")
        return network

    # ---- stages ------------------------------------------------------------------------------------
    def pretrain(self) -> Path:
        return self.training.fit(
            "pretrain", self.training.new_module(self.new_network(), self.cfg.pretrain), self.cfg.pretrain.max_epochs
        )

    def prune_one_shot(self, dense: MBDLNetwork) -> tuple[ReconModule, PruningResult, Path]:
        """Prune a copy of ``dense`` (the callback, on a real val batch), test it, save the pruned checkpoint."""
        callback = SpadePruning(self.prune_settings)
        path = self.output_dir / "checkpoints" / "prune" / "pruned.ckpt"
        module = self.training.test("pruned (one-shot)", copy.deepcopy(dense), callbacks=[callback], save_to=path)
        log.info("[prune] wrote the pruned checkpoint %s", path)
        return module, callback.result, path

    def benchmark(
        self, dense: MBDLNetwork, pruned: MBDLNetwork, extra: dict[str, Any] | None = None, preface: str = ""
    ) -> dict[str, Any] | None:
        """Time dense vs pruned (rank 0 only: the other ranks' numbers would be neither needed nor fair)."""
        if not self.writer:
            return None
        settings = BenchmarkSettings(**self.cfg.benchmark)
        return benchmark_and_write(dense, pruned, self.datamodule, settings, self.output_dir, extra, preface)

    def choose_structure(self, dense: MBDLNetwork, extra: dict[str, Any]) -> str:
        """The measured choices of the pruned structure (:mod:`spade_pl.job.stages.structure_search`), into
        ``self.prune_settings`` and the results (``extra``); returns the report's paragraphs."""
        settings = BenchmarkSettings(**self.cfg.benchmark)
        search = StructureSearch(
            self.prune_settings,
            settings,
            lambda: benchmark_batch(self.datamodule, settings),
            self.output_dir,
            self.resume.folder is not None,
        )
        markdown = search.choose(dense, extra)
        self.prune_settings = search.settings
        return markdown


def report(
    r: Run, tested: dict[str, ReconModule], extra: dict[str, Any] | None = None, extra_markdown: str = ""
) -> dict[str, Any]:
    """Combine test results of several models (zero-filled taken from the first) and write them out."""
    first = next(iter(tested.values())).test_results
    results: dict[str, Any] = {
        "stage": r.cfg.stage,
        "split": r.datamodule.eval_split,
        "convention": first["convention"],
        "num_volumes": len(first["per_volume"]),
        "seed": r.cfg.seed,
        # the job's own overrides (a sweep's axes): collect groups the jobs that differ only in seed
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        "models": {
            r.cfg.problem.get("baseline", "zero-filled"): split_test_results(first)[0],
            **{n: split_test_results(m.test_results)[1] for n, m in tested.items()},
        },
        **(extra or {}),
    }
    if conditions := r.datamodule.evaluation_conditions():
        results["transfer"] = conditions
    if r.training.validation:
        results["validation"] = r.training.validation
    if summary := run_summary(results):
        results["summary"] = summary
        extra_markdown += "\n" + summary_text(summary)
    if not r.writer:
        return results
    examples = {name: module.example for name, module in tested.items() if module.example}
    text = write_results(r.output_dir, results, extra_markdown, examples)
    r.training.tracking.log_summary(summary_record(results), r.output_dir / "results.png")
    print("\n" + text, flush=True)
    log.info("[report] wrote %s/results.{json,md,png}", r.output_dir)
    return results


def run_spade(r: Run) -> dict[str, Any]:
    """dense teacher -> one-shot prune -> fine-tune -> benchmark -> report."""
    dense_path = r.dense_checkpoint()
    dense = r.dense_network(dense_path)
    tested = {"dense": r.training.test("dense", dense)}
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
        r.training.costs["prune"] = {"wall_s": pruning.seconds}
        final = pruned.network
        if r.cfg.finetune.get("objective"):
            final, ckpt = finetune(r, pruned, teacher=dense)
            extra.update(finetuned_checkpoint=str(ckpt), finetuned_model=finetuned_name(r.cfg.finetune))
            extra["strategy"] = r.cfg.finetune.name
            tested[finetuned_name(r.cfg.finetune)] = r.training.test(finetuned_name(r.cfg.finetune), final)
            if adapts_to_test(r.cfg.finetune):
                markdown += (
                    f"\n{TEST_TIME}: the pruned network was fine-tuned on the measurements of the very volumes it is "
                    f"scored on (scan-specific adaptation, the SPADE paper's protocol; no ground truth read).\n"
                )
        bench = r.benchmark(dense, final)
        if bench is not None:
            extra["benchmark"] = bench
            markdown += "\n" + benchmark_markdown(bench)
    if r.training.costs:
        extra["cost"] = r.training.costs
        markdown += "\n" + cost_markdown(r.training.costs)
    return report(r, tested, extra, markdown)


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
    return report(r, {"model": r.training.test("model", r.load_network(r.cfg.ckpt_path)[0])})


def stage_export(r: Run) -> dict[str, Any]:
    """Write ``ckpt_path`` as weights + pruning history, its library's format and TorchScript."""
    require(r.cfg.ckpt_path is not None, "stage=export needs ckpt_path=/path/to/model.ckpt (dense or pruned)")
    if not r.writer:
        return {}
    network, structure = r.load_network(r.cfg.ckpt_path)
    return write_export(
        network, structure, r.cfg.network.model, r.datamodule, BenchmarkSettings(**r.cfg.benchmark), r.output_dir
    )


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
    return report(
        r,
        {"dense": r.training.test("dense", dense), "pruned (one-shot)": pruned},
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
