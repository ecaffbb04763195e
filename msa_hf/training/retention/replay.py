# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Replay: a share of every training batch comes from the base's synthetic data engine, with its exact masks.

The base learnt to segment anything from the data engine's pictures; rows of those pictures among the
adaptation rows keep that task in the loss while the adapters learn the new structures. The replayed rows are
prompted as the dataset's rows are (a jittered box and uniform positive clicks, same counts), so the batch
keeps its size, shapes and cost; only `labels`, prompts and pixels of those rows change.

A replayed 1024 px row costs ~80 ms of one CPU core (drawn at the engine's size, then resized, normalised and
prompted), about what a GPU takes for a training step, so a training run draws them ahead in DataLoader
workers (`ReplayFeed`), as it reads its own rows; the rows of a draw are a function of (seed, draw) alone, so
where they are drawn does not change them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from msa_hf.base_model.data_engine import SyntheticConfig, SyntheticSegmentationDataset
from msa_hf.base_model.held_out import collate_samples, pixel_values_from_uint8, samples_at_size
from msa_hf.processing.prompts import box_from_mask, sample_point_prompt

REPLAY_SEED_OFFSET = 2_000_003  # a stream of its own: not the held-out set's (see `held_out_set`)
BOX_JITTER = 0.1  # as the training rows' boxes (`task_dataset`)
STREAM_LENGTH = 2**40  # pictures are drawn by index; the stream never runs out


def replayed_row_count(batch_size: int, share: float) -> int:
    """Rows of a `batch_size` batch that `share` replaces: the nearest whole number, at least one when the
    share is positive, and never the whole batch unless `share` is 1."""
    if share <= 0:
        return 0
    if share >= 1:
        return batch_size
    return min(max(1, round(share * batch_size)), batch_size - 1) if batch_size > 1 else 1


class SyntheticReplay:
    """The data engine's pictures as training rows for a model of input side `image_size`.

    `rows(start, count, points_per_prompt, rng)` draws pictures `start .. start + count - 1` of the stream
    `seed + REPLAY_SEED_OFFSET` (one target each, chosen by the engine) and returns model inputs:
    `pixel_values` `(count, 3, S, S)`, `labels` `(count, 1, S, S)`, `input_boxes` `(count, 1, 4)`,
    `input_points` `(count, 1, points_per_prompt, 2)`, `input_labels` `(count, 1, points_per_prompt)`.
    """

    def __init__(self, image_size: int, seed: int = 0, config: SyntheticConfig | None = None) -> None:
        self.image_size = image_size
        self.stream = SyntheticSegmentationDataset(
            STREAM_LENGTH, seed=seed + REPLAY_SEED_OFFSET, config=config
        )

    def rows(
        self, start: int, count: int, points_per_prompt: int, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        samples = collate_samples([self.stream[start + i] for i in range(count)])
        images, masks = samples_at_size(samples["images"], samples["masks"], self.image_size)
        clicks = [sample_point_prompt(m.numpy(), points_per_prompt, 0, rng, "uniform") for m in masks]
        return {
            "pixel_values": pixel_values_from_uint8(images),
            "labels": masks[:, None].float(),
            "input_boxes": torch.from_numpy(
                np.stack([box_from_mask(m.numpy(), BOX_JITTER, rng) for m in masks])
            )[:, None],
            "input_points": torch.from_numpy(np.stack([c.points for c in clicks]))[:, None],
            "input_labels": torch.from_numpy(np.stack([c.labels for c in clicks]))[:, None],
        }


def mix_replayed_rows(batch: dict[str, Any], rows: dict[str, torch.Tensor]) -> dict[str, Any]:
    """`batch` (2-D training rows) with its first k rows replaced by `rows` (`SyntheticReplay.rows` of k
    pictures), on the batch's device and in its dtypes. The other rows, and every key that is not a model
    input, are left as they are (`adapted`, the adapted structures, is cleared on the replaced rows); `batch`
    itself is not modified."""
    pixel_values = batch["pixel_values"]
    if pixel_values.ndim != 4:
        raise ValueError("replay takes 2-D batches; the depth branch's windows are not supported yet.")
    count = len(rows["pixel_values"])
    if count > len(pixel_values) or rows["input_points"].shape[-2] != batch["input_points"].shape[-2]:
        raise ValueError(
            f"replayed rows of {count} pictures and {rows['input_points'].shape[-2]} clicks do not fit a batch "
            f"of {len(pixel_values)} rows and {batch['input_points'].shape[-2]} clicks."
        )
    mixed = dict(batch)
    for key, values in rows.items():
        if key in batch:
            original = batch[key]
            # pinned rows from a feed's workers copy without blocking, as the batch's own rows do
            moved = values.to(original.device, original.dtype, non_blocking=True)
            mixed[key] = torch.cat([moved, original[count:]])
    if "has_target" in batch and isinstance(batch["has_target"], torch.Tensor):
        mixed["has_target"] = batch["has_target"].clone()
        mixed["has_target"][:count] = True
    if "adapted" in batch:  # the engine's pictures hold none of the structures being adapted to
        mixed["adapted"] = batch["adapted"].clone()
        mixed["adapted"][:count] = False
    return mixed


class ReplayDraws(torch.utils.data.Dataset):
    """Draw `d` -> the rows of pictures `d * count .. d * count + count - 1` (`replay.rows`), prompted from a
    generator of (seed, d) of their own, so that the batch's other random choices stay those of a run without
    replay; a DataLoader's workers draw them (`ReplayFeed`), `mix_replayed_rows` puts them in the batch."""

    def __init__(self, replay: SyntheticReplay, count: int, points_per_prompt: int, seed: int) -> None:
        self.replay, self.count, self.points_per_prompt, self.seed = replay, count, points_per_prompt, seed

    def __len__(self) -> int:
        return STREAM_LENGTH // max(self.count, 1)

    def __getitem__(self, draw: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, draw, 1])
        return self.replay.rows(draw * self.count, self.count, self.points_per_prompt, rng)


class ReplayFeed:
    """The replayed rows of a training run's micro-batches, drawn ahead by DataLoader workers.

    Micro-batch `m` of process `r` of `P` takes draw `m * P + r` (other pictures per process). `rows_for(m)`
    returns that draw's rows; asked for the micro-batches in order (as a run, resumed or not, does), the
    workers have drawn them already; asked out of order, the feed starts again at the one asked for.
    `loader_options`: the training loader's (`msa_hf.training.datasets.loader_options`); with no workers the
    rows are drawn in this process when asked for.
    """

    def __init__(self, draws: ReplayDraws, processes: int = 1, process_index: int = 0, **loader_options: Any):
        self.draws, self.processes, self.process_index = draws, processes, process_index
        # a jump starts a new loader anyway; its workers need not outlive it
        self.loader_options = {k: v for k, v in loader_options.items() if k != "persistent_workers"}
        self._next: int | None = None
        self._rows: Iterator[dict[str, torch.Tensor]] | None = None

    def rows_for(self, micro: int) -> dict[str, torch.Tensor]:
        """The rows of micro-batch `micro`: `SyntheticReplay.rows` of `draws.count` pictures."""
        if micro != self._next:
            first = micro * self.processes + self.process_index
            sampler = itertools.count(first, self.processes)  # an endless run of draws: no epoch boundary
            self._rows = iter(
                torch.utils.data.DataLoader(
                    self.draws, batch_size=None, sampler=sampler, **self.loader_options
                )
            )
        self._next = micro + 1
        return next(self._rows)
