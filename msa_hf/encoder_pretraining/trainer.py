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
from msa_hf.training.state import save_training_state


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
    from accelerate import Accelerator
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "pretraining_config.json").write_text(json.dumps(asdict(config), indent=2))
    accelerator = Accelerator()
    torch.manual_seed(config.seed)
    mark_trainable(model, config.trainable)
    module = EncoderPretrainingModule(
        model.vision_encoder, build_objectives(config, model.config.vision_config)
    )
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    module, optimizer = accelerator.prepare(module, optimizer)
    checkpoint, progress = output_dir / "checkpoint", output_dir / "progress.json"
    step = 0
    if progress.is_file() and checkpoint.is_dir():
        accelerator.load_state(str(checkpoint))
        step = json.loads(progress.read_text())["step"]
    metrics = output_dir / "metrics.csv"
    if not metrics.exists() and accelerator.is_main_process:
        metrics.write_text("step," + ",".join(["loss", *config.objectives]) + "\n")
    module.train()
    bar = tqdm(
        total=config.steps, initial=step, desc="pretrain encoder", disable=not accelerator.is_main_process
    )
    streamed = isinstance(images, torch.utils.data.IterableDataset)
    if streamed:  # this process's share of the stream, past what earlier steps consumed (exact resume)
        stream = iter(images)
        for _ in range(step * config.batch_size):
            next(stream)
    while step < config.steps:
        if streamed:
            pixels = torch.stack([next(stream) for _ in range(config.batch_size)]).to(accelerator.device)
        else:  # each process takes its own share of the step's batch
            indices = _batch_indices(
                step, len(images), config.batch_size * accelerator.num_processes, config.seed
            )
            mine = indices[accelerator.process_index :: accelerator.num_processes]
            pixels = torch.stack([images[int(i)] for i in mine]).to(accelerator.device)
        if (
            step % 2 == 1
        ):  # a deterministic flip every other step: the only augmentation, cheap and label-free
            pixels = pixels.flip(-1)
        generator = torch.Generator().manual_seed(
            config.seed * 1_000_003 + step * accelerator.num_processes + accelerator.process_index
        )
        parts = module(pixels, generator)
        loss = sum(config.objectives[name] * value for name, value in parts.items())
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if accelerator.is_main_process and (step % config.log_every == 0 or step == config.steps):
            with metrics.open("a", newline="") as handle:
                csv.writer(handle).writerow(
                    [step, f"{loss.item():.5f}", *(f"{parts[name].item():.5f}" for name in config.objectives)]
                )
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_training_state(accelerator, checkpoint)
            if accelerator.is_main_process:
                progress.write_text(json.dumps({"step": step}))
    bar.close()
    # every replica must end with the same weights (DDP); a checksum per process says whether they do
    checksum = (
        torch.stack([p.detach().double().sum() for p in parameters]).sum().reshape(1).to(accelerator.device)
    )
    checksums = accelerator.gather(checksum)
    weights_agree = bool(torch.allclose(checksums, checksums[:1].expand_as(checksums)))
    final = output_dir / "final"
    if accelerator.is_main_process:
        (output_dir / "pretraining_result.json").write_text(
            json.dumps(
                {"steps": step, "num_processes": accelerator.num_processes, "weights_agree": weights_agree}
            )
        )
        model.save_pretrained(final)  # its vision encoder is the module's, trained in place
        heads = accelerator.unwrap_model(module).objectives
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()},
                  str(final / "pretraining_heads.safetensors"))  # fmt: skip
    accelerator.wait_for_everyone()
    return final
