# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""3-D: windows of D consecutive slices of one volume for the depth branch, and their reassembly.

`slice_windows` indexes a slice dataset by case (reading only `case_id` and `slice`), `VolumeWindowDataset`
yields one `(D, H, W)` stack with one structure's mask per item, `SamVolumeTransform` turns it into the
model's 5-D input `(C, D, S, S)` with per-slice prompts, and `reassemble_volume` averages overlapping
window predictions back into one `(Z, H, W)` volume (use `volume_from_axial_slices` + `save_nifti` to write
it on the case's affine).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from msa_hf.data.tasks import SamSegmentationTransform, structure_mask, structures_present
from msa_hf.data.transforms import GrayscaleToRGB, SamNormalize, intensity_transform_for, resize_and_pad
from msa_hf.processing.prompts import PADDING_LABEL, resized_shape, sample_point_prompt


@dataclass
class SliceWindow:
    """D consecutive slices of one case.

    Attributes:
        case_id: the case.
        rows: dataset row index of each of the D positions.
        slices: slice index of each position (consecutive; edge slices repeat when the case has fewer
            than D slices).
        valid: False at repeated (padding) positions, which `reassemble_volume` ignores.
    """

    case_id: str
    rows: list[int]
    slices: list[int]
    valid: list[bool]


def slice_windows(dataset: Any, depth: int, stride: int | None = None) -> list[SliceWindow]:
    """All windows of `depth` consecutive slices, `stride` apart (default `depth`: no overlap).

    The last window of a case is aligned to the case's end, so every slice is covered; a case shorter than
    `depth` gets one window padded by repeating its edge slices.

    Raises:
        ValueError: a case whose slice indices are not consecutive (a slice is missing).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}.")
    stride = depth if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}.")
    by_case: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, (case_id, slice_index) in enumerate(zip(dataset["case_id"], dataset["slice"], strict=True)):
        by_case[case_id].append((slice_index, row))
    windows = []
    for case_id in sorted(by_case):
        ordered = sorted(by_case[case_id])
        slices = [s for s, _ in ordered]
        if slices != list(range(slices[0], slices[0] + len(slices))):
            missing = sorted(set(range(slices[0], slices[-1] + 1)) - set(slices))
            raise ValueError(
                f"case {case_id}: slices {missing[:5]} are missing; windows need consecutive slices."
            )
        count = len(ordered)
        if count <= depth:
            positions = [min(max(i - (depth - count) // 2, 0), count - 1) for i in range(depth)]
            first = (depth - count) // 2
            valid = [first <= i < first + count for i in range(depth)]
            windows.append(
                SliceWindow(
                    case_id, [ordered[p][1] for p in positions], [ordered[p][0] for p in positions], valid
                )
            )
            continue
        starts = list(range(0, count - depth + 1, stride))
        if starts[-1] != count - depth:
            starts.append(count - depth)
        for start in starts:
            chosen = ordered[start : start + depth]
            windows.append(
                SliceWindow(case_id, [r for _, r in chosen], [s for s, _ in chosen], [True] * depth)
            )
    return windows


class VolumeWindowDataset(torch.utils.data.Dataset):
    """Items of D consecutive slices with one structure's binary mask.

    Each (window, structure present somewhere in the window) pair is one item:
    `image` `(D, H, W)` raw pixels, `mask` `(D, H, W)` uint8, `class_id`, `class_name`, `case_id`, `slices`,
    `valid`, `modality`; passed through `transform` when given (e.g. `SamVolumeTransform`).
    """

    def __init__(
        self,
        dataset: Any,
        depth: int,
        class_names: Mapping[int, str],
        classes: Sequence[int] | None = None,
        stride: int | None = None,
        transform: Any | None = None,
        regions: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        self.dataset = dataset
        self.class_names = dict(class_names)
        self.transform = transform
        self.regions = dict(regions or {})  # structures made of several label values (`read_regions`)
        wanted = set(self.class_names) if classes is None else set(classes)
        present = dataset["labels_present"]
        self.windows = slice_windows(dataset, depth, stride)
        self.items = [
            (window, value)
            for window in self.windows
            for value in structures_present(
                {v for row in window.rows for v in present[row]}, wanted, self.regions
            )
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        window, value = self.items[index]
        rows = self.dataset[window.rows]  # positions repeat for padded windows; datasets handles that
        example = {
            "image": np.stack([np.asarray(image) for image in rows["image"]]),
            "mask": np.stack(
                [structure_mask(np.asarray(label), value, self.regions) for label in rows["label"]]
            ).astype(np.uint8),
            "class_id": value,
            "class_name": self.class_names[value],
            "case_id": window.case_id,
            "slices": list(window.slices),
            "valid": list(window.valid),
            "modality": rows["modality"][0],
        }
        return self.transform(example) if self.transform is not None else example


class SamVolumeTransform(SamSegmentationTransform):
    """`VolumeWindowDataset(..., transform=SamVolumeTransform(image_size=S))` -> 5-D model inputs.

    Each item becomes: pixel_values `(3, D, S, S)` (collated to the model's `(V, C, D, S, S)`), labels
    `(D, 1, S, S)`, input_points `(D, 1, N, 2)` and input_labels `(D, 1, N)` (slices where the structure is
    absent get padding points, label -10), original_sizes `(2,)`, reshaped_input_sizes `(2,)`. Intensity
    normalisation and augmentation use one set of parameters for the whole window, so the slices stay
    consistent along depth. Boxes are not offered: an empty slice has no box.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompts.use_box:
            raise ValueError(
                "SamVolumeTransform: box prompts are undefined on slices without the target; use points."
            )

    def __call__(self, example: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        rng, generator = self._generators({"case_id": example["case_id"], "slice": example["slices"][0],
                                           "class_id": example["class_id"]})  # fmt: skip
        image = np.asarray(example["image"])
        depth, height, width = image.shape[:3]
        if image.ndim != 3:
            raise ValueError(f"case {example['case_id']}: SamVolumeTransform needs grayscale (D,H,W) slices.")
        intensity = intensity_transform_for(example.get("modality", "other"), image.dtype, self.window)
        scaled = intensity(torch.from_numpy(image.astype(np.float32)))  # one normalisation for the window
        pixels = torch.cat([GrayscaleToRGB()(s) for s in scaled])  # (3D, H, W)
        mask = torch.from_numpy(np.asarray(example["mask"]).astype(np.uint8))
        pixels, mask = resize_and_pad(pixels, mask, self.image_size)
        new_height, new_width = resized_shape((height, width), self.image_size)
        valid = torch.zeros(self.image_size, self.image_size, dtype=torch.uint8)
        valid[:new_height, :new_width] = 1
        if self.augment:
            stacked = torch.cat([mask, valid[None]])
            pixels, stacked = self.spatial_augment(pixels, stacked, generator)
            mask, valid = stacked[:-1], stacked[-1]
            pixels = self.intensity_jitter(pixels, generator)
        pixels = pixels.reshape(depth, 3, self.image_size, self.image_size)
        normalized = SamNormalize()(pixels).transpose(0, 1)  # (3, D, S, S)
        count = self.prompts.num_positive + self.prompts.num_negative
        points = torch.zeros(depth, 1, count, 2)
        labels = torch.full((depth, 1, count), PADDING_LABEL, dtype=torch.int64)
        for index in range(depth):
            if mask[index].any():
                prompt = sample_point_prompt(
                    mask[index], self.prompts.num_positive, self.prompts.num_negative, rng,
                    self.prompts.click_strategy, valid.bool(),
                )  # fmt: skip
                points[index, 0] = torch.from_numpy(prompt.points)
                labels[index, 0] = torch.from_numpy(prompt.labels)
        return {
            "pixel_values": normalized,
            "labels": mask[:, None].float(),
            "input_points": points,
            "input_labels": labels,
            "original_sizes": torch.tensor([height, width]),
            "reshaped_input_sizes": torch.tensor([new_height, new_width]),
            "valid_slices": torch.tensor(example["valid"]),
            "case_id": example["case_id"],
            "class_id": example["class_id"],
            "class_name": example["class_name"],
            "slices": torch.tensor(example["slices"]),
        }


def reassemble_volume(
    windows: Sequence[SliceWindow],
    predictions: Sequence[torch.Tensor | np.ndarray],
    num_slices: int | None = None,
    uncovered: float | None = None,
) -> torch.Tensor:
    """Average per-window slice predictions of one case into a volume.

    Args:
        windows: the windows of one case (from `slice_windows`).
        predictions: one `(D, H, W)` array per window (probabilities or logits), same order.
        num_slices: slices of the case; the volume then holds slices `0 .. num_slices - 1` (default: the
            windows' span, from their first slice to their last).
        uncovered: the value of slices no window covers (a structure's windows need not span the case);
            None makes an uncovered slice an error.
    Returns:
        `(num_slices, H, W)` float32; slices covered by several windows get the mean, padding positions
        are ignored.
    """
    if len(windows) != len(predictions) or not windows:
        raise ValueError(
            f"got {len(windows)} windows and {len(predictions)} predictions; need the same, > 0."
        )
    if len({w.case_id for w in windows}) != 1:
        raise ValueError("reassemble_volume: windows from several cases; reassemble one case at a time.")
    if num_slices is not None:
        first_slice = 0
    else:
        first_slice = min(min(w.slices) for w in windows)
        num_slices = max(max(w.slices) for w in windows) - first_slice + 1
    height, width = np.asarray(predictions[0]).shape[-2:]
    total = torch.zeros(num_slices, height, width)
    count = torch.zeros(num_slices, 1, 1)
    for window, prediction in zip(windows, predictions, strict=True):
        prediction = torch.as_tensor(
            np.asarray(prediction) if not isinstance(prediction, torch.Tensor) else prediction
        )
        for position, (slice_index, valid) in enumerate(zip(window.slices, window.valid, strict=True)):
            if valid:
                total[slice_index - first_slice] += prediction[position].float().cpu()
                count[slice_index - first_slice] += 1
    missing = count.flatten() == 0
    if missing.any() and uncovered is None:
        missing_slices = (torch.nonzero(missing).flatten() + first_slice).tolist()
        raise ValueError(
            f"reassemble_volume: slices {missing_slices[:5]} are covered by no window; pass "
            "uncovered=<value> to fill them."
        )
    volume = total / count.clamp(min=1)
    if uncovered is not None:
        volume[missing] = uncovered
    return volume
