"""The fine-tuning recipe of a job, decided once: where it starts, how long it trains, on which data, and how
reports name its model. Preflight validates it and the fine-tuning stage reads it, so no default is decided
twice."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from spade_pl.core.errors import SpadeInputError, require
from spade_pl.core.instantiate import build
from spade_pl.objectives.contractivity import check_contractivity_weight

TEST_TIME = "test-time"
INITS = ("pruned", "scratch")
BUDGETS = ("finetune", "total")
DATA = ("train", "test")


def adaptation_recipe(recipe: DictConfig) -> DictConfig:
    """``finetune`` with ``finetune.test_time`` merged onto it (each key given there replaces the recipe's):
    adapting to a few test volumes from the one-shot pruned start wants other epochs and another step size than
    the training split, predicts held-out columns worse with the EI weight chosen for the training split, and
    its few hundred steps leave a weight average that lags behind (the runs: experiments/LOG.md)."""
    plain = OmegaConf.to_container(recipe, resolve=True)
    overrides = plain.pop("test_time", None) or {}
    return OmegaConf.merge(OmegaConf.create(plain), OmegaConf.create(overrides))


@dataclass(frozen=True)
class FinetuneRecipe:
    """The ``finetune`` group, validated.

    ``node`` is what the fine-tuning module trains with (``finetune.test_time`` merged on for test-time
    adaptation); ``init`` ``pruned`` starts from the one-shot pruned weights (SPADE), ``scratch`` from a fresh
    initialisation (the baselines); ``budget`` ``total`` adds the teacher's epochs (equal total compute);
    ``data`` ``test`` adapts to the scored volumes' measurements (never their ground truth)."""

    name: str
    node: DictConfig
    init: str = "pruned"
    budget: str = "finetune"
    data: str = "train"
    label: str | None = None

    @classmethod
    def from_config(cls, finetune: DictConfig) -> FinetuneRecipe:
        data = finetune.get("data", "train")
        require(data in DATA, f"finetune.data={data!r} is invalid; allowed: train, test (test-time)")
        node = adaptation_recipe(finetune) if data == "test" else finetune
        init, budget = node.get("init", "pruned"), node.get("budget", "finetune")
        require(init in INITS, f"finetune.init={init!r} is invalid; allowed: {', '.join(INITS)}")
        require(budget in BUDGETS, f"finetune.budget={budget!r} is invalid; allowed: {', '.join(BUDGETS)}")
        return cls(finetune.name, node, init, budget, data, finetune.get("label"))

    @property
    def trains(self) -> bool:
        """Whether the recipe fine-tunes at all (``finetune=none`` stops at the one-shot pruned network)."""
        return bool(self.node.get("objective"))

    @property
    def adapts_to_test(self) -> bool:
        return self.data == "test"

    def epochs(self, finetune_epochs: int, pretrain_epochs: int) -> int:
        """The epochs this recipe trains: the adaptation's own for test-time data, the fine-tuning epochs plus
        the teacher's for an equal total budget, else the fine-tuning epochs."""
        if self.adapts_to_test:
            return int(self.node.max_epochs)
        return finetune_epochs + (pretrain_epochs if self.budget == "total" else 0)

    @property
    def model_label(self) -> str:
        """How reports name the fine-tuned model; test-time adaptation is labelled as such everywhere."""
        suffix = f" ({TEST_TIME})" if self.adapts_to_test else ""
        return (self.label or f"pruned + {self.name}") + suffix

    def check_objectives(self, finetune: DictConfig) -> None:
        """Build the fine-tuning objective, and the test-time adaptation's, once: a bad value in either is one
        line now, not after the teacher has trained."""
        if finetune.get("objective"):
            build(finetune.objective)
        check_contractivity_weight(finetune.get("contractivity_weight", 0.0))
        if finetune.get("test_time") and finetune.get("objective"):
            try:
                build(adaptation_recipe(finetune).objective)
            except SpadeInputError as err:
                raise SpadeInputError(f"with finetune.test_time merged on (test-time adaptation): {err}") from None
