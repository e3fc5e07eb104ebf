"""How pack chains and cross-data-set tests are carried out: one interface, implementations by name.

A run, its final models and a sweep's earlier stages all ask `make_executor` for the executor the
config's `executor` names. Each implementation lives in its own module and is named here by its
import path, so choosing one imports only it (`inline` runs without Ray) and this module imports
neither torch nor Ray. Adding an executor is one module and one line in EXECUTORS.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from partfer.orchestrator.config import ConfigError
from partfer.orchestrator.messages import shown

if TYPE_CHECKING:
    from partfer.orchestrator.evaluation.cross_eval import CrossEvalJob
    from partfer.orchestrator.execution.cluster import ClusterInfo
    from partfer.orchestrator.execution.progress import Progress
    from partfer.orchestrator.training.train import PackJob, PackResult

# name (the config's `executor`) -> "module:class" of its implementation
EXECUTORS: dict[str, str] = {
    "ray": "partfer.orchestrator.execution.executors:RayExecutor",
    "inline": "partfer.orchestrator.execution.executors:InlineExecutor",
    "train": "partfer.orchestrator.execution.train_executor:TrainExecutor",
}


class Executor(ABC):
    """Runs a plan's pack chains (stage s+1 of a chain after stage s) and its cross-data-set
    tests, reporting to the run's Progress, with the settings the config gives."""

    uses_ray: bool = True              # the caller joins a Ray cluster first (and passes it as `cluster`)
    # the executor a handful of packs (final models, a sweep's earlier stages) runs on instead,
    # where this one's set-up would cost more than it saves; None: this one
    few_packs: str | None = None

    def __init__(self, cfg: dict, storage: str, device: str, cluster: ClusterInfo | None = None):
        self.cfg, self.storage, self.device, self.cluster = cfg, storage, device, cluster

    @abstractmethod
    def run_chains(self, chains: list[list[PackJob]], progress: Progress) -> list[PackResult]:
        """Train every chain; the packs' results (a failed pack raises, after the others end)."""

    @abstractmethod
    def run_cross_evals(self, jobs: list[CrossEvalJob], progress: Progress) -> int:
        """Test trained models on other data sets; the prediction files written."""


def executor_class(name: str) -> type[Executor]:
    """The implementation registered under `name`; ConfigError names the known ones."""
    if name not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, not {shown(name)}")
    module, attribute = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def make_executor(name: str, cfg: dict, storage: str, device: str,
                  cluster: ClusterInfo | None = None, few_packs: bool = False) -> Executor:
    """The executor `name` over a run's config, store, device and cluster; with `few_packs`, the
    one it hands a handful of packs to."""
    chosen = executor_class(name)
    if few_packs and chosen.few_packs:
        chosen = executor_class(chosen.few_packs)
    return chosen(cfg, storage, device, cluster)
