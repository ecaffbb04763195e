# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The datasets a training run reads: a prepared dataset's split turned into SAM rows (2-D) or depth windows
(3-D), with the prompts, augmentation and intensity window of the run's config."""

from __future__ import annotations

import logging
import os
import statistics
from typing import Any

import torch

from msa_hf.training.config import TrainConfig

logger = logging.getLogger(__name__)

# at most this many workers by default: past it, more processes only hold more copies of the dataset's pages
MAX_DEFAULT_WORKERS = 8


def task_dataset(config: TrainConfig, split: str, image_size: int, train: bool) -> Any:
    """The rows `split` of `config.dataset` as the model sees them, and the transform on them.

    2-D: binary-task rows (one per slice and structure) with `SamSegmentationTransform`; 3-D (depth branch):
    `VolumeWindowDataset` windows of D slices with `SamVolumeTransform`. Training rows get random clicks,
    boxes and augmentation (seeded per epoch and row); validation rows get the deterministic ones.
    Returns `(dataset, transform)`.
    """
    from msa_hf.data import (
        PromptSampling,
        SamSegmentationTransform,
        SamVolumeTransform,
        VolumeWindowDataset,
        load_prepared,
        read_class_names,
        read_regions,
        select_class_names,
        to_binary_tasks,
    )

    class_names = select_class_names(read_class_names(config.dataset), config.classes)
    regions = read_regions(config.dataset)
    slices = load_prepared(config.dataset)
    if split not in slices:
        raise ValueError(
            f"{config.dataset} has no {split!r} split (it has {list(slices)}); re-run msa-hf prepare."
        )
    if config.use_depth_branch:
        # 3-D: windows of D consecutive slices, point prompts per slice (an empty slice has no box)
        transform = SamVolumeTransform(
            image_size=image_size,
            prompts=PromptSampling(
                num_positive=config.num_clicks, click_strategy="uniform" if train else "interior"
            ),
            augment=train and config.augment,
            window=config.window,
            deterministic=True,
            seed=config.seed,
        )
        windows = VolumeWindowDataset(
            slices[split], config.num_slices, class_names, transform=transform, regions=regions
        )
        return windows, transform
    # distillation that stays off the adapted structures needs their union on every training row
    keep_adapted = train and config.distill_probability > 0 and config.distill_outside_labels
    tasks = to_binary_tasks(
        slices[split], class_names, image_size=image_size, keep_adapted=keep_adapted, regions=regions
    )
    prompts = PromptSampling(
        num_positive=config.num_clicks,
        click_strategy="uniform" if train else "interior",
        use_box=True,
        box_jitter=0.1 if train else 0.0,
    )
    window = config.window
    transform = SamSegmentationTransform(
        image_size=image_size,
        prompts=prompts,
        augment=train and config.augment,
        window=window,
        deterministic=True,  # prompts are a function of (seed, row): resumable; the trainer reseeds per epoch
        seed=config.seed,
    )
    tasks.set_transform(transform)
    return tasks, transform


def training_slice_spacing(config: TrainConfig) -> float | None:
    """A depth-branch run's slice spacing in mm: the median over the train split's cases (each case's slices
    share one), which the saved processor records so that inference resamples other volumes to it
    (`msa_hf.inference.slice_spacing`). None for a 2-D run, whose model sees one slice at a time, and for
    pictures (spacing in pixels). Cases spread over more than 1.5x around it are said in the log: the depth
    branch then learns several spacings at once, and `msa-hf prepare --target-spacing` gives it one."""
    if not config.use_depth_branch:
        return None
    from msa_hf.data import load_prepared

    split = load_prepared(config.dataset)["train"]
    by_case: dict[str, float] = {}
    for case_id, spacing, unit in zip(split["case_id"], split["spacing"], split["spacing_unit"], strict=True):
        if unit == "mm":
            by_case.setdefault(case_id, float(spacing[2]))
    if not by_case:
        return None
    median = statistics.median(by_case.values())
    low, high = min(by_case.values()), max(by_case.values())
    if high > 1.5 * median or low < median / 1.5:
        logger.warning(
            "%s: the training cases' slice spacings run from %g to %g mm; the model records their median, "
            "%g mm, and inference resamples volumes to it. To train the depth branch at one spacing, prepare "
            "the dataset with --target-spacing X Y %g.",
            config.dataset, low, high, median, median,
        )  # fmt: skip
    return median


def _prepare_report(config: TrainConfig) -> dict[str, Any]:
    """The dataset's `prepare_report.json` (empty where there is none, as for a Hub dataset, or it is not an
    object)."""
    import json
    from pathlib import Path

    try:
        content = json.loads((Path(config.dataset) / "prepare_report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def training_planes(config: TrainConfig) -> tuple[str, ...] | None:
    """The planes the dataset's volumes were cut into (`planes` of its `prepare_report.json`), which the saved
    processor records so that inference can say when it cuts a volume in a plane the model never saw; None
    where the report gives none (pictures, or a dataset prepared before planes were recorded)."""
    planes = _prepare_report(config).get("planes") or {}
    return tuple(sorted(set(planes.values()))) if isinstance(planes, dict) and planes else None


def training_channel(config: TrainConfig) -> tuple[int, str | None] | None:
    """The channel the dataset's multi-channel cases were read in and its name (`channel` and `channel_name` of
    its `prepare_report.json`), which the saved processor records so that inference reads the same one; None
    where its cases had one channel (or the report predates the record)."""
    content = _prepare_report(config)
    channel = content.get("channel")
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
        return None
    name = content.get("channel_name")
    return channel, name if isinstance(name, str) and name.strip() else None


def loader_options(num_workers: int | None, device: torch.device | str, processes: int = 1) -> dict[str, Any]:
    """`torch.utils.data.DataLoader` keyword arguments that keep `device` fed with training batches.

    Reading, augmentation and prompt simulation happen in the dataset's transform, so worker processes do
    them beside the step. `num_workers` None picks: on a GPU one worker per CPU core this process may use
    (its share of the cores when `processes` run on the machine, one core left to the process itself), at
    most `MAX_DEFAULT_WORKERS`; on the CPU none (the step's own threads use the cores). On CUDA batches go
    to pinned memory, so the copy to the GPU can run without blocking (accelerate's `non_blocking`).
    Workers persist across epochs (no restart, no empty pipeline at each epoch's start).
    """
    device = torch.device(device)
    if num_workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        num_workers = (
            min(MAX_DEFAULT_WORKERS, max(cores // max(processes, 1) - 1, 1)) if device.type == "cuda" else 0
        )
    options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        options.update(persistent_workers=True, prefetch_factor=4)
    return options
