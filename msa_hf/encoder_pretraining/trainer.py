# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`pretrain_encoder`: self-supervised pretraining of SAM's image encoder (or only MSA's encoder adapters)
before prompt training, with accelerate (one or many GPUs), checkpoints and exact resume."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from msa_hf.encoder_pretraining.config import EncoderPretrainingConfig
from msa_hf.encoder_pretraining.objectives import build_objectives
from msa_hf.output_files import atomic_folder
from msa_hf.training.loop import Checkpoints, LoopSettings, TrainingLoop, constant_rate


def mark_trainable(model: Any, trainable: str) -> list[str]:
    """Freeze everything but MSA's encoder adapters ("adapters") or the image encoder ("encoder"); returns the
    trainable parameter names. The prompt encoder and mask decoder never train here (no objective reaches them)."""
    from msa_hf.modeling.modeling_msa import is_adapter_parameter

    model.requires_grad_(False)
    names = []
    for name, parameter in model.vision_encoder.named_parameters():
        if trainable == "encoder" or is_adapter_parameter(name):
            parameter.requires_grad_(True)
            names.append(f"vision_encoder.{name}")
    return names


class EncoderPretrainingModule(nn.Module):
    """The image encoder with the objectives' heads: one module, so DDP synchronises every trainable gradient."""

    def __init__(self, encoder: nn.Module, objectives: nn.ModuleDict) -> None:
        super().__init__()
        self.encoder, self.objectives = encoder, objectives

    def forward(self, pixel_values: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """`(B, 3, S, S)` -> each objective's loss."""
        return {
            name: objective(self.encoder, pixel_values, generator)
            for name, objective in self.objectives.items()
        }


def _batch_indices(step: int, count: int, batch_size: int, seed: int) -> np.ndarray:
    """The images of step `step`: a function of the step alone, so a resumed run sees what an unbroken one would."""
    return np.random.default_rng([seed, step]).choice(count, size=batch_size, replace=count < batch_size)


def pretrain_encoder(
    model: Any, images: torch.utils.data.Dataset, config: EncoderPretrainingConfig, output_dir: str | Path
) -> Path:
    """Pretrain `model` (a `SamAdapterModel`) on `images` (a map-style dataset of `(3, S, S)` items, or a
    `StreamedImages` stream already split for this process); returns the folder of the result.

    `output_dir/checkpoint/` holds the accelerate state (resumed automatically when present), `metrics.csv`
    the losses, `final/` the `SamAdapterModel` (`save_pretrained`, loads as usual for prompt training) and
    `final/pretraining_heads.safetensors` the objectives' heads.
    """
    from safetensors.torch import save_file

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "pretraining_config.json").write_text(json.dumps(asdict(config), indent=2))
    torch.manual_seed(config.seed)
    mark_trainable(model, config.trainable)
    module = EncoderPretrainingModule(
        model.vision_encoder, build_objectives(config, model.config.vision_config)
    )
    settings = LoopSettings(
        steps=config.steps, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        max_grad_norm=None, checkpoint_every=config.checkpoint_every, description="pretrain encoder",
    )  # fmt: skip
    loop = TrainingLoop(
        module, settings, schedule=constant_rate, checkpoints=Checkpoints(output_dir, rolling=False)
    )
    accelerator = loop.accelerator
    checkpoint = loop.checkpoints.latest()
    if checkpoint is not None:
        loop.resume(checkpoint)
    metrics = output_dir / "metrics.csv"
    if not metrics.exists() and accelerator.is_main_process:
        metrics.write_text("step," + ",".join(["loss", *config.objectives]) + "\n")

    def batches() -> Any:  # a step's images are a function of the step (or of the stream's position)
        streamed = isinstance(images, torch.utils.data.IterableDataset)
        if streamed:  # this process's share of the stream, past what earlier steps consumed (exact resume)
            stream = iter(images)
            for _ in range(loop.step * config.batch_size):
                next(stream)
        while True:
            if streamed:
                pixels = torch.stack([next(stream) for _ in range(config.batch_size)])
            else:  # each process takes its own share of the step's batch
                indices = _batch_indices(
                    loop.step, len(images), config.batch_size * accelerator.num_processes, config.seed
                )
                mine = indices[accelerator.process_index :: accelerator.num_processes]
                pixels = torch.stack([images[int(i)] for i in mine])
            if loop.step % 2 == 1:  # a deterministic flip every other step: the only augmentation
                pixels = pixels.flip(-1)
            yield pixels.to(accelerator.device)

    def loss_of(pixels: torch.Tensor, micro: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(
            config.seed * 1_000_003 + loop.step * accelerator.num_processes + accelerator.process_index
        )
        parts = loop.model(pixels, generator)
        return sum(config.objectives[name] * value for name, value in parts.items()), parts

    def log(step: int, loss: float, parts: dict[str, float]) -> None:
        if accelerator.is_main_process and (step % config.log_every == 0 or step == config.steps):
            with metrics.open("a", newline="") as handle:
                csv.writer(handle).writerow(
                    [step, f"{loss:.5f}", *(f"{parts[name]:.5f}" for name in config.objectives)]
                )

    loop.run(batches(), loss_of, log)
    weights_agree = loop.replicas_agree()
    final = output_dir / "final"
    if accelerator.is_main_process:
        (output_dir / "pretraining_result.json").write_text(
            json.dumps({"steps": loop.step, "num_processes": accelerator.num_processes,
                        "weights_agree": weights_agree})
        )  # fmt: skip
        with atomic_folder(final, overwrite=True) as staging:  # whole, or the earlier export stays
            model.save_pretrained(staging)  # its vision encoder is the module's, trained in place
            heads = loop.unwrapped.objectives
            save_file({k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()},
                      str(staging / "pretraining_heads.safetensors"))  # fmt: skip
    accelerator.wait_for_everyone()
    return final
