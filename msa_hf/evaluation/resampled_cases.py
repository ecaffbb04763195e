# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A prepared case on a depth-branch model's slice grid, for evaluating the model as `msa-hf predict` serves it.

`msa-hf predict` shows a depth-branch model a volume at the slice spacing it was trained at
(`msa_hf.inference.slice_spacing`). To score a prepared dataset the same way, `evaluate_volumes` resamples each
case off that spacing: its images are interpolated linearly onto the model's grid (and kept in their stored
dtype, which picks the intensity transform), each model slice takes the label map of its nearest input slice
(labels are not interpolated; this is where the evaluation's clicks come from), and the model's votes come
back onto the case's own slices, where they are scored against the case's own labels.

`ResampledCase` holds one such case in memory and answers the column reads `VolumeWindowDataset` makes of a
slice dataset (a column by name, the columns of a list of rows), so the same windows, prompts and reassembly
serve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from msa_hf.inference.slice_spacing import SliceResampling


@dataclass(frozen=True)
class ResampledCase:
    """One case's slices on a model's grid.

    Attributes:
        case_id: the case.
        resampling: the map between the case's slices and the model's.
        images: `(model_count, H, W)` image slices, in the dataset's stored dtype.
        labels: `(model_count, H, W)` label maps, each its nearest input slice's.
        modality: the case's modality.
        present: each model slice's `labels_present` (read once, not at every window).
    """

    case_id: str
    resampling: SliceResampling
    images: np.ndarray
    labels: np.ndarray
    modality: str
    present: tuple[list[int], ...]

    COLUMNS = ("case_id", "slice", "labels_present", "modality", "image", "label")

    @classmethod
    def from_rows(cls, rows: Any, resampling: SliceResampling) -> ResampledCase:
        """The case whose slice dataset `rows` (one case, in slice order, `resampling.input_count` of them)
        are resampled by `resampling`."""
        images = np.stack([np.asarray(image) for image in rows["image"]])
        labels = np.stack([np.asarray(label) for label in rows["label"]])
        interpolated = resampling.image_to_model(images, opt_out="msa-hf evaluate --no-resample-slices")
        if np.issubdtype(images.dtype, np.integer):  # a uint8 picture stays one: its dtype picks /255
            info = np.iinfo(images.dtype)
            interpolated = np.clip(np.rint(interpolated), info.min, info.max)
        nearest = resampling.nearest_input_slices()
        present = [list(values) for values in rows["labels_present"]]
        return cls(
            case_id=rows["case_id"][0],
            resampling=resampling,
            images=interpolated.astype(images.dtype),
            labels=labels[nearest],
            modality=rows["modality"][0],
            present=tuple(present[i] for i in nearest),
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: str | list[int]) -> Any:
        """A column by name (`case_id`, `slice`, `labels_present`, `modality`, `image`, `label`), or for a
        list of model slices the dict of their columns, as `datasets.Dataset` gives them."""
        if isinstance(key, str):
            return self._column(key, range(len(self)))
        return {name: self._column(name, key) for name in self.COLUMNS}

    def _column(self, name: str, rows: Any) -> list[Any]:
        if name not in self.COLUMNS:
            raise KeyError(f"a resampled case has no column {name!r}; it has {', '.join(self.COLUMNS)}.")
        value = {
            "case_id": lambda i: self.case_id,
            "slice": lambda i: int(i),
            "labels_present": lambda i: self.present[i],
            "modality": lambda i: self.modality,
            "image": lambda i: self.images[i],
            "label": lambda i: self.labels[i],
        }[name]
        return [value(i) for i in rows]

    def votes_to_input(self, votes: np.ndarray) -> np.ndarray:
        """`(model_count, H, W)` votes in [-1, 1] (the mean of the windows' +1 / -1) -> `(input_count, H, W)`
        bool on the case's own slices: the share of votes for the structure, interpolated linearly, kept above
        one half (as predict keeps a propagation's probabilities)."""
        return self.resampling.probabilities_to_input((np.asarray(votes, np.float32) + 1) / 2) > 0.5
