# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The one optimisation loop behind every trainer of msa_hf.

train.py (`run_training`), the base model's pretraining (`pretrain_base`), encoder pretraining
(`pretrain_encoder`), the gate's short adapter runs (`train_adapters`) and text-prompt training
(`train_text_prompts`) differ in their data, their loss and what they report; they share this loop:

- accelerate's setup (one process or many, mixed precision from the launcher), AdamW over the trainable
  parameters and a learning-rate schedule (transformers' `get_cosine_schedule_with_warmup` unless a trainer
  brings its own);
- gradient accumulation, gradient-norm clipping, and a stop on a non-finite loss *before* the optimiser
  applies it (the gradient norm is synchronised, so every process stops at the same step);
- checkpoints written to a temporary folder and renamed into place (a kill never leaves a half-written one)
  and resumed exactly: the optimiser, schedule, data-loader and random states come back, and the step and
  micro-step counters let a trainer make its data and prompts a function of the step;
- a progress bar, the trackers accelerate was given, and the check that every DDP replica ends with the
  same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_hf.training.state import save_training_state

STATE_FILE = "trainer_state.json"
# a trainer's loss: (batch, micro-step) -> (loss, named parts for the log)
LossFunction = Callable[[Any, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]
# what a trainer does after an optimiser step (evaluate, write its own log): (step, loss, parts) -> None
StepHook = Callable[[int, float, dict[str, float]], None]


@dataclass
class LoopSettings:
    """How a trainer optimises: the step count and AdamW's and the schedule's settings.

    Args:
        steps: optimiser steps of the whole run (a resumed run counts from where it stopped).
        learning_rate, weight_decay: AdamW's.
        warmup_steps: linear warm-up of the default cosine schedule.
        gradient_accumulation_steps: micro-batches per optimiser step.
        max_grad_norm: clip the gradient norm to this; None measures it (for the non-finite stop) unclipped.
        checkpoint_every: write a checkpoint every this many steps (and at the last step); 0 only at the last.
        description: the progress bar's label.
    """

    steps: int
    learning_rate: float
    weight_decay: float = 0.0
    warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 0
    description: str = "train"


def cosine_with_warmup(optimizer: torch.optim.Optimizer, settings: LoopSettings) -> Any:
    """transformers' linear warm-up then cosine decay to zero over `settings.steps`."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)


def constant_rate(optimizer: torch.optim.Optimizer, settings: LoopSettings) -> Any:
    """A constant learning rate (the encoder's and text prompts' trainers)."""
    from transformers import get_constant_schedule

    return get_constant_schedule(optimizer)


@dataclass
class LoopTiming:
    """Where a run's time went, on this process (host clock; each step's loss read waits for the device).

    Attributes:
        first_step_seconds: the first optimiser step this run made: worker start-up, the first batches and,
            with `torch.compile`, the compilation.
        seconds: every later step, data waits included; validation and checkpoints (the hooks) excluded.
        data_seconds: the part of `seconds` spent waiting for the next batch.
        micro_batches: micro-batches in `seconds`.
    """

    first_step_seconds: float = 0.0
    seconds: float = 0.0
    data_seconds: float = 0.0
    micro_batches: int = 0

    @property
    def data_share(self) -> float | None:
        """The share of the steps' time spent waiting for data (0: the data kept up), or None before any."""
        return self.data_seconds / self.seconds if self.seconds > 0 else None


class NonFiniteLossError(ValueError):
    """The loss or the gradients became NaN or infinite; nothing of that step was applied."""


class Checkpoints:
    """Where a run keeps its resumable state, and how it is written: complete or not at all.

    Two layouts: *rolling* (`checkpoints/step-0000100/`, the two newest kept, and a `latest` pointer:
    train.py's runs, which a user may resume from an earlier step) and *single* (one `checkpoint/` folder
    replaced at each save, with `progress.json` beside it: the long pretraining runs). In both, a checkpoint
    is written to a temporary sibling and renamed into place, and its step and the trainer's state live in
    its own `trainer_state.json`.
    """

    def __init__(self, output_dir: str | Path, rolling: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.rolling = rolling
        self.root = self.output_dir / ("checkpoints" if rolling else "checkpoint")

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        if self.rolling:
            pointer = self.root / "latest"
            return self.root / pointer.read_text().strip() if pointer.is_file() else None
        if (self.root / STATE_FILE).is_file():
            return self.root
        # runs written before checkpoints carried their own state: the step is in progress.json
        legacy = self.output_dir / "progress.json"
        return self.root if legacy.is_file() and any(self.root.glob("*.safetensors")) else None

    def read_state(self, checkpoint: Path) -> dict[str, Any]:
        """The `{"step": ..., **trainer state}` saved with `checkpoint`."""
        state_file = checkpoint / STATE_FILE
        if not state_file.is_file() and not self.rolling:
            state_file = self.output_dir / "progress.json"
        return json.loads(state_file.read_text())

    def save(self, accelerator: Any, step: int, state: dict[str, Any]) -> Path:
        """Write the accelerate state of every process and `state` as the checkpoint of `step`."""
        final = self.root / f"step-{step:07d}" if self.rolling else self.root
        temporary = final.with_name(f".tmp-{final.name}")
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
        accelerator.wait_for_everyone()
        save_training_state(accelerator, temporary)
        # every process writes its own files into the temporary folder (its random state): the folder is moved
        # into place only once all have finished, or a slower process writes into a folder that is gone
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (temporary / STATE_FILE).write_text(json.dumps({"step": step, **state}))
            _replace_folder(temporary, final)
            if self.rolling:
                _replace_text(self.root / "latest", final.name)
                for old in sorted(self.root.glob("step-*"))[:-2]:  # keep the two newest
                    shutil.rmtree(old, ignore_errors=True)
            else:
                _replace_text(self.output_dir / "progress.json", json.dumps({"step": step, **state}))
        accelerator.wait_for_everyone()
        return final


def _replace_folder(new: Path, target: Path) -> None:
    previous = target.with_name(f".old-{target.name}")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        os.replace(target, previous)
    os.replace(new, target)
    shutil.rmtree(previous, ignore_errors=True)


def _replace_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class TrainingLoop:
    """One trainer's optimisation: build it, prepare its data loaders, optionally `resume`, then `run`.

    Args:
        model: the module whose `requires_grad` parameters train (prepared by accelerate here).
        settings: steps, optimiser and schedule settings.
        accelerator: an `accelerate.Accelerator` when the trainer needs its own options (trackers, DDP's
            unused-parameter search); else one is made with `settings.gradient_accumulation_steps`.
        schedule: `(optimizer, settings) -> scheduler`; `cosine_with_warmup` by default.
        checkpoints: where checkpoints go; None writes none.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        settings: LoopSettings,
        accelerator: Any = None,
        schedule: Callable[[torch.optim.Optimizer, LoopSettings], Any] = cosine_with_warmup,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        if accelerator is None:
            from accelerate import Accelerator

            accelerator = Accelerator(gradient_accumulation_steps=settings.gradient_accumulation_steps)
        self.accelerator, self.settings, self.checkpoints = accelerator, settings, checkpoints
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError(
                "the model has no trainable parameter: mark what trains first (for MSA, "
                "mark_only_adapters_as_trainable())."
            )
        optimizer = torch.optim.AdamW(
            self.parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        self.model, self.optimizer, self.scheduler = accelerator.prepare(
            model, optimizer, schedule(optimizer, settings)
        )
        self.step, self.micro = 0, 0  # optimiser steps and micro-batches done
        self.losses: list[float] = []  # the loss of each step this process ran
        self.state: dict[str, Any] = {}  # the trainer's own state, saved with every checkpoint
        self.timing = LoopTiming()

    @property
    def unwrapped(self) -> torch.nn.Module:
        """The model without accelerate's wrappers (DDP, compile), for evaluation and saving."""
        return self.accelerator.unwrap_model(self.model)

    def prepare(self, loader: torch.utils.data.DataLoader) -> Any:
        """A data loader prepared for this loop's processes (sharded, seedable, resumable with the state)."""
        return self.accelerator.prepare(loader)

    def resume(self, checkpoint: Path) -> dict[str, Any]:
        """Restore `checkpoint` (after every loader is prepared); returns the trainer state saved with it."""
        self.accelerator.load_state(str(checkpoint))
        state = dict(self.checkpoints.read_state(checkpoint)) if self.checkpoints else {}
        self.step = state.pop("step", 0)
        self.micro = self.step * self.settings.gradient_accumulation_steps
        self.state = state
        return state

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current step (no-op without `checkpoints`)."""
        if self.checkpoints is None:
            return None
        return self.checkpoints.save(self.accelerator, self.step, self.state)

    def run(
        self,
        batches: Iterator[Any],
        loss_of: LossFunction,
        after_step: StepHook | None = None,
        stop_early: Callable[[], bool] | None = None,
    ) -> bool:
        """Optimise until `settings.steps` (or `stop_early()` says so after a step; it then checkpoints).

        Args:
            batches: the micro-batches, drawn one per micro-step (a trainer may make them a function of
                `self.step` / `self.micro`, which is how runs resume exactly).
            loss_of: `(batch, micro-step) -> (loss, parts)`.
            after_step: called after each optimiser step with the step, its loss and parts; the model is put
                back in training mode after it.
        Returns:
            True when the run reached `settings.steps`, False when it stopped early.
        Raises:
            NonFiniteLossError: the loss or gradients are not finite (the step is not applied).
        """
        from tqdm.auto import tqdm

        accelerator, settings = self.accelerator, self.settings
        bar = tqdm(
            total=settings.steps, initial=self.step, desc=settings.description,
            disable=not accelerator.is_main_process,
        )  # fmt: skip
        self.model.train()
        timing, first_step = self.timing, True
        clock = time.perf_counter()
        try:
            while self.step < settings.steps:
                waited = time.perf_counter()
                batch = next(batches)
                waited = time.perf_counter() - waited
                if not first_step:
                    timing.data_seconds += waited
                    timing.micro_batches += 1
                with accelerator.accumulate(self.model):
                    loss, parts = loss_of(batch, self.micro)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        self._clip_or_stop(loss)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.micro += 1
                if not accelerator.sync_gradients:
                    continue
                self.step += 1
                value = loss.detach().item()  # waits for the device: the clock below measures real steps
                self.losses.append(value)
                now = time.perf_counter()
                if first_step:
                    timing.first_step_seconds += now - clock
                    first_step = False
                else:
                    timing.seconds += now - clock
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(self.losses[-50:]):.3f}")
                numbers = {
                    name: float(part.detach() if isinstance(part, torch.Tensor) else part)
                    for name, part in parts.items()
                }
                if accelerator.trackers:
                    accelerator.log({"train/loss": value, **{f"train/{k}": v for k, v in numbers.items()},
                                     "train/lr": self.scheduler.get_last_lr()[0]}, step=self.step)  # fmt: skip
                if after_step is not None:
                    after_step(self.step, value, numbers)
                    self.model.train()
                every = settings.checkpoint_every
                due = (every and self.step % every == 0) or self.step == settings.steps
                if due:
                    self.save_checkpoint()
                if stop_early is not None and self.step < settings.steps and stop_early():
                    if not due:
                        self.save_checkpoint()
                    return False
                clock = time.perf_counter()  # the hooks and checkpoints above are not training time
        finally:
            bar.close()
        return True

    def _clip_or_stop(self, loss: torch.Tensor) -> None:
        accelerator = self.accelerator
        limit = self.settings.max_grad_norm
        # clipping at infinity measures the norm and leaves the gradients as they are (scaled by exactly 1)
        norm = accelerator.clip_grad_norm_(self.parameters, float("inf") if limit is None else limit)
        # a NaN/inf loss on any process makes the synchronised gradients non-finite everywhere, so every
        # process stops at the same step without an extra collective; fp16's loss scaler skips such steps
        if accelerator.scaler is None and not torch.isfinite(norm):
            last = self.checkpoints.latest() if self.checkpoints else None
            kept = (
                f"the last checkpoint ({last.name}) is intact"
                if last is not None
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"step {self.step + 1}: the training loss is not finite (this process's loss "
                f"{float(loss.detach())}, gradient norm {float(norm)}), usually a learning rate too high for "
                f"this base or data. Nothing of this step was applied and {kept}; start a new run with a "
                "lower --learning-rate (a resumed run keeps its recorded settings)."
            )

    def replicas_agree(self) -> bool:
        """Whether every process ends with the same trainable weights (DDP keeps replicas equal; a bug there
        would silently train N models, so it is checked, not assumed)."""
        checksum = torch.stack([p.detach().double().sum() for p in self.parameters]).sum().reshape(1)
        checksums = self.accelerator.gather(checksum.to(self.accelerator.device))
        return bool(torch.allclose(checksums, checksums[:1].expand_as(checksums)))


def epoch_batches(
    loader: Any, loop: TrainingLoop, on_epoch: Callable[[int], None] | None = None
) -> Iterator[Any]:
    """A prepared map-style loader's batches, epoch after epoch, from the loop's current micro-step: each
    epoch sets the sampler's epoch (and calls `on_epoch(epoch)`, e.g. to reseed augmentation), and a resumed
    run skips the batches its epoch already used."""
    while True:
        epoch, position = divmod(loop.micro, len(loader))
        loader.set_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
        yield from loop.accelerator.skip_first_batches(loader, position) if position else loader


__all__ = [
    "Checkpoints",
    "LoopSettings",
    "LoopTiming",
    "NonFiniteLossError",
    "TrainingLoop",
    "constant_rate",
    "cosine_with_warmup",
    "epoch_batches",
]
