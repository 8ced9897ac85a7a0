"""The one training loop behind ``elp-train`` (live backbone features) and ``training.cached`` (a cached
encoder pass): steps, optimiser and scheduler steps, validation, the best weights with patience, and
the metrics written back into the set.

What differs between the two lives in a :class:`FeatureSource`: where a batch's head outputs come
from (the backbone on waveforms, or cached layer outputs) and its targets. The loss and how it is
applied are the task's (:mod:`elp.tasks`: ``build_loss`` and ``loss``).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from elp import AdapterSet
from elp.tasks import TaskSpec
from training.evaluation import public


def warmup_cosine(step: int, warmup_steps: int, progress: float) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, times a cosine from 1 to 0 over
    ``progress`` in [0, 1] (shared by elp-train, the cached refit and distillation)."""
    return min(1.0, (step + 1) / max(1, warmup_steps)) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float,
                     budget_s: float = 0.0, started: float | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then cosine over whichever budget ends first: ``total_steps`` or ``budget_s`` seconds of
    wall clock since ``started`` (so a time-boxed run still anneals instead of stopping at full rate)."""
    warmup = int(warmup_fraction * total_steps)

    def factor(step: int) -> float:
        progress = step / total_steps
        if budget_s:
            progress = max(progress, (time.perf_counter() - (started or 0.0)) / budget_s)
        return warmup_cosine(step, warmup, progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def constant_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


# ------------------------------------------------------------------ loss
@dataclass
class HeadBatch:
    """One training batch after the head: outputs and targets; ``target_lengths`` is set for sequence
    targets (CTC), where ``output_lengths`` are the real frames of each clip."""

    output: torch.Tensor
    targets: torch.Tensor
    output_lengths: torch.Tensor | None = None
    target_lengths: torch.Tensor | None = None
    #: a frozen teacher's outputs for the same rows, the rows it speaks for, and its term's weight
    teacher: torch.Tensor | None = None
    teacher_rows: torch.Tensor | None = None
    teacher_weight: float = 0.0


def teacher_divergence(output: torch.Tensor, teacher: torch.Tensor, rows: torch.Tensor,
                       lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean KL(teacher || output) over the chosen rows' outputs (each frame of a sequence output, up to its
    length): how far training has moved those rows' answers from where they started."""
    log_student, log_teacher = output.float().log_softmax(-1), teacher.float().log_softmax(-1)
    divergence = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)  # (rows,) or (rows, frames)
    weight = rows.float()
    if divergence.dim() == 2:
        frames = torch.arange(divergence.shape[1], device=divergence.device)
        valid = frames[None, :] < (lengths if lengths is not None else divergence.new_full(
            (divergence.shape[0],), divergence.shape[1]))[:, None]
        weight = weight[:, None] * valid.float()
    return (divergence * weight).sum() / weight.sum().clamp(min=1.0)


def loss_value(task: TaskSpec, loss_fn: nn.Module, batch: HeadBatch) -> torch.Tensor:
    """The loss of one batch, applied the task's way (:meth:`elp.tasks.TaskSpec.loss`) in float32, plus
    ``teacher_weight`` x :func:`teacher_divergence` when the batch carries a teacher's outputs."""
    loss = task.loss(loss_fn, batch.output.float(), batch.output_lengths, batch.targets, batch.target_lengths)
    if batch.teacher is not None and batch.teacher_rows is not None and batch.teacher_weight > 0:
        loss = loss + batch.teacher_weight * teacher_divergence(batch.output, batch.teacher, batch.teacher_rows,
                                                                batch.output_lengths)
    return loss


# ------------------------------------------------------------------ the loop
class FeatureSource(Protocol):
    """Where training batches come from: live backbone passes or a cached encoder pass."""

    def train(self) -> None:
        """Put the trained modules in training mode (after a validation left them in eval)."""

    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of one epoch, in a seeded order."""

    def forward(self, batch: Any) -> HeadBatch:
        """Head outputs and targets of one batch."""


@dataclass
class Validation:
    """One validation: the selection metric's ``name``, ``value`` and direction, and extra history fields."""

    name: str
    value: float
    higher_is_better: bool
    extras: dict = field(default_factory=dict)


@dataclass
class LoopState:
    """Where a run is; saved with live checkpoints (same keys as before, so old ones resume)."""

    step: int = 0
    epoch: int = 0
    best: float | None = None
    best_step: int = 0
    stale: int = 0
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoopSettings:
    """How long to train and when to validate: every ``eval_every`` steps (and at the last step or when
    out of time), or with ``eval_every=0`` at the end of every epoch."""

    total_steps: int
    patience: int
    eval_every: int = 0
    budget_s: float = 0.0
    clip_grad_norm: float | None = None
    history_key: str = "step"  # "step" or "epoch": what a history entry is numbered by


@dataclass
class TrainingLoop:
    """Trains until the steps run out, patience runs out or the time budget is spent; keeps a copy of
    the best weights of ``tracked`` modules and restores them with :meth:`restore_best`."""

    task: TaskSpec
    source: FeatureSource
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    validate: Callable[[], Validation]
    settings: LoopSettings
    tracked: dict[str, nn.Module]
    best_weights: dict[str, dict] = field(default_factory=dict)
    state: LoopState = field(default_factory=LoopState)
    on_improved: Callable[[LoopState], None] = lambda state: None
    on_validated: Callable[[LoopState, float, Validation], None] = lambda state, loss, result: None
    on_step: Callable[[LoopState, float], None] = lambda state, loss: None
    started: float = field(default_factory=time.perf_counter)

    def run(self) -> LoopState:
        state, settings = self.state, self.settings
        stop = False
        self.source.train()
        while not stop and state.step < settings.total_steps:
            loss = None
            for batch in self.source.batches(state.epoch):
                loss = self._step(batch)
                out_of_time = bool(settings.budget_s) and time.perf_counter() - self.started > settings.budget_s
                due = settings.eval_every and (state.step % settings.eval_every == 0
                                               or state.step >= settings.total_steps)
                if due or out_of_time:
                    stop = self._validate(loss) or out_of_time
                if stop or state.step >= settings.total_steps:
                    break
            if not settings.eval_every and loss is not None:
                stop = self._validate(loss)
            state.epoch += 1
        return state

    def _step(self, batch: Any) -> torch.Tensor:
        loss = loss_value(self.task, self.loss_fn, self.source.forward(batch))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                           self.settings.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        self.on_step(self.state, loss.item())
        return loss

    def _validate(self, loss: torch.Tensor) -> bool:
        """Validate, keep the weights when they beat the best so far; True when patience ran out."""
        state = self.state
        result = self.validate()
        higher = result.higher_is_better
        number = state.step if self.settings.history_key == "step" else state.epoch + 1
        state.history.append({self.settings.history_key: number, "loss": loss.item(),
                              f"valid_{result.name}": result.value} | result.extras)
        improved = state.best is None or (result.value > state.best if higher else result.value < state.best)
        if improved:
            state.best, state.best_step, state.stale = result.value, state.step, 0
            self.best_weights = {name: copy.deepcopy(module.state_dict()) for name, module in self.tracked.items()}
            self.on_improved(state)
        else:
            state.stale += 1
        self.on_validated(state, loss.item(), result)
        self.source.train()
        return state.stale >= self.settings.patience

    def restore_best(self) -> None:
        for name, weights in self.best_weights.items():
            self.tracked[name].load_state_dict(weights)


# ------------------------------------------------------------------ write-back
def write_back_metrics(adapter_set: AdapterSet, valid: dict, test: dict | None, **more: dict) -> None:
    """Record the final metrics in the set's config; a set scored on trials also takes its validation
    EER threshold as its decision threshold."""
    if "eer_threshold" in valid:
        adapter_set.config.threshold = float(valid["eer_threshold"])
    adapter_set.config.metrics = {"valid": public(valid)}
    if test:
        adapter_set.config.metrics["test"] = public(test)
    adapter_set.config.metrics |= more


# ------------------------------------------------------------------ checkpoints (no pickle)
def save_checkpoint(run_dir: Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, state: dict):
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, values in opt["state"].items():
        for k, v in values.items():
            tensors[f"optimizer.{pid}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    tmp = run_dir / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(run_dir / "checkpoint.safetensors")
    meta = dict(state, param_groups=[{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                                     for g in opt["param_groups"]])
    (run_dir / "checkpoint.json").write_text(json.dumps(meta, indent=1))


def load_checkpoint(run_dir: Path, modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer) -> dict:
    tensors = load_file(str(run_dir / "checkpoint.safetensors"))
    meta = json.loads((run_dir / "checkpoint.json").read_text())
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta
