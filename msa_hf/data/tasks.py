# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""From slice rows to model batches.

`to_binary_tasks` turns each multi-label slice into one (image, structure mask, structure name) row per
structure present — the paper trains one prompt per organ. `SamSegmentationTransform` turns such rows
into SAM inputs: intensity normalisation chosen by modality, grayscale -> RGB, resize/pad to the model's
input size (masks kept binary), optional augmentation, and simulated prompts in the model's frame.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Features, Image, List, Value

from msa_hf.data.transforms import (
    GrayscaleToRGB,
    IntensityJitter,
    RandomSpatialAugment,
    SamNormalize,
    covering_mask,
    intensity_transform_for,
    resize_and_pad,
)
from msa_hf.processing.prompts import (
    PADDING_LABEL,
    ClickStrategy,
    box_from_mask,
    resized_shape,
    sample_point_prompt,
)

logger = logging.getLogger(__name__)

TASK_FEATURES = Features(
    {
        "case_id": Value("string"),
        "slice": Value("int32"),
        "num_slices": Value("int32"),
        "image": Image(),
        "mask": Image(),
        "class_id": Value("int32"),
        "class_name": Value("string"),
        "spacing": List(Value("float32"), length=3),
        "spacing_unit": Value("string"),
        "modality": Value("string"),
    }
)


def collate_ragged(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Like `default_collate`, but values whose shapes differ between examples stay lists."""
    out: dict[str, Any] = {}
    for key in examples[0]:
        values = [example[key] for example in examples]
        if isinstance(values[0], torch.Tensor) and all(v.shape == values[0].shape for v in values):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


Regions = Mapping[int, Sequence[int]]  # class id -> the label values a structure is the union of


def structure_values(class_id: int, regions: Regions | None = None) -> tuple[int, ...]:
    """The label values structure `class_id` is made of: its region's (a dataset's `regions.json`,
    `read_regions`), else the class id itself. The one rule of which pixels a structure holds."""
    return tuple(regions[class_id]) if regions and class_id in regions else (class_id,)


def structure_mask(label: np.ndarray, class_id: int, regions: Regions | None = None) -> np.ndarray:
    """Boolean mask of structure `class_id` in a label map of any shape (`structure_values`)."""
    values = structure_values(class_id, regions)
    return label == values[0] if len(values) == 1 else np.isin(label, values)


def structures_present(
    labels_present: Sequence[int], wanted: Sequence[int] | set[int], regions: Regions | None = None
) -> list[int]:
    """The structures of `wanted` that a slice holds, in class-id order, from its `labels_present` values."""
    present = set(labels_present)
    return [c for c in sorted(wanted) if present.intersection(structure_values(c, regions))]


def region_paint_values(regions: Regions) -> dict[int, int]:
    """The label value that writes each region into one label map when the regions are painted in class-id
    order, later over earlier (as nnU-Net writes region predictions): the smallest of its values that no later
    region holds. Read back with `structure_mask`, each region is then the union of its own mask and the later
    regions' (its mask itself where they nest inside it, as BraTS's do).

    Raises:
        ValueError: a region whose values all belong to later regions (it could not be told apart).
    """
    painted: dict[int, int] = {}
    for class_id in sorted(regions):
        later = {v for other in regions if other > class_id for v in regions[other]}
        own = sorted(set(regions[class_id]) - later)
        if not own:
            raise ValueError(
                f"region {class_id} ({list(regions[class_id])}) holds no label value of its own once the later "
                "regions are painted over it; list regions from the outermost to the innermost."
            )
        painted[class_id] = own[0]
    return painted


def select_class_names(class_names: Mapping[int, str], wanted: str | Sequence[str] | None) -> dict[int, str]:
    """The `{label value: name}` entries of `wanted`: names or label values, as a list or one comma-separated
    string ("csf,grey_matter", "1, 2"). None or empty keeps them all.

    Raises:
        ValueError: a wanted entry is neither a name nor a label value of `class_names` (the error lists them).
    """
    if not wanted:
        return dict(class_names)
    tokens = (
        [t.strip() for t in wanted.split(",")]
        if isinstance(wanted, str)
        else [str(t).strip() for t in wanted]
    )
    by_name = {name: value for value, name in class_names.items()}
    selected: dict[int, str] = {}
    for token in filter(None, tokens):
        if token in by_name:
            value = by_name[token]
        elif token.lstrip("-").isdigit() and int(token) in class_names:
            value = int(token)
        else:
            choices = ", ".join(f"{name} ({value})" for value, name in class_names.items())
            raise ValueError(f"classes: {token!r} is not a structure of this dataset; choose from {choices}.")
        selected[value] = class_names[value]
    return selected


def to_binary_tasks(
    dataset: Any,
    class_names: Mapping[int, str],
    classes: list[int] | None = None,
    min_pixels: int = 1,
    image_size: int | None = None,
    keep_adapted: bool = False,
    regions: Regions | None = None,
) -> Any:
    """One row per (slice, structure present): `image`, binary `mask` (uint8 0/1), `class_id`, `class_name`;
    with `keep_adapted`, also `adapted` (uint8 0/1), the union of every kept structure on that slice (what
    self-distillation's prompts stay away from: `msa_hf.training.retention.distillation_batch`).

    Empty masks never become rows: structures absent from a slice (or under `min_pixels`) are skipped
    and counted in the log, so training never meets an empty target mid-epoch. The image bytes are passed
    through without decoding.

    Args:
        dataset: a slice `Dataset` (or `IterableDataset`) from `load_prepared` / `prepare_dataset`.
        class_names: `{label value: name}` (`read_class_names(folder)`).
        classes: label values to keep (default: all in `class_names`).
        min_pixels: smallest mask kept.
        image_size: also drop masks that vanish when resized to the model's input size (thin structures
            at a small `image_size`), so every row has a target in the model frame too.
        regions: the dataset's structures made of several label values (`read_regions`).
    """
    wanted = set(class_names) if classes is None else set(classes)
    unknown = wanted - set(class_names)
    if unknown:
        raise ValueError(f"classes {sorted(unknown)} are not in class_names {dict(class_names)}.")
    skipped = [0]
    mask_encoder = Image()
    features = TASK_FEATURES.copy()
    features["image"] = Image(decode=False)
    if keep_adapted:
        features["adapted"] = Image()

    def expand(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for index in range(len(batch["case_id"])):
            present = structures_present(batch["labels_present"][index], wanted, regions)
            if not present:
                continue
            label = np.asarray(batch["label"][index])
            values = [v for c in present for v in structure_values(c, regions)]
            adapted = (
                mask_encoder.encode_example(np.isin(label, values).astype(np.uint8)) if keep_adapted else None
            )
            for value in present:
                mask = structure_mask(label, value, regions)
                if int(mask.sum()) < min_pixels or (image_size and not _survives_resize(mask, image_size)):
                    skipped[0] += 1
                    continue
                for name in (
                    "case_id",
                    "slice",
                    "num_slices",
                    "image",
                    "spacing",
                    "spacing_unit",
                    "modality",
                ):
                    out[name].append(batch[name][index])
                # encoded here: a raw array returned from map is widened to int64 and stored as a TIFF
                out["mask"].append(mask_encoder.encode_example(mask.astype(np.uint8)))
                out["class_id"].append(int(value))
                out["class_name"].append(class_names[value])
                if keep_adapted:
                    out["adapted"].append(adapted)
        return out

    source = dataset.cast_column("image", Image(decode=False))
    tasks = source.map(expand, batched=True, remove_columns=list(source.column_names), features=features)
    if skipped[0]:
        logger.info(
            "to_binary_tasks: skipped %d masks (under %d pixels or empty at %s px)",
            skipped[0],
            min_pixels,
            image_size,
        )
    return tasks.cast_column("image", Image())


def _survives_resize(mask: np.ndarray, image_size: int) -> bool:
    """Whether a binary mask keeps any pixel after `resize_and_pad` to `image_size` (nearest neighbour)."""
    _, resized = resize_and_pad(
        torch.zeros(1, *mask.shape), torch.from_numpy(mask.astype(np.uint8)), image_size
    )
    return bool(resized.any())


@dataclass
class PromptSampling:
    """Which prompts to simulate per target.

    Attributes:
        num_positive: positive clicks (the paper's 1-, 3-, 10-point protocols).
        num_negative: negative clicks outside the target.
        click_strategy: "uniform" inside the target, or "interior" (first click at the most interior point).
        use_points: give clicks at all (False with `use_box` for box-only prompts).
        use_box: add the target's bounding box.
        box_jitter: box noise as a fraction of the box side (SAM trains with 0.1); 0 for evaluation.
    """

    num_positive: int = 1
    num_negative: int = 0
    click_strategy: ClickStrategy = "uniform"
    use_points: bool = True
    use_box: bool = False
    box_jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.use_points and not self.use_box:
            raise ValueError("PromptSampling: enable use_points, use_box or both.")
        if self.use_points and self.num_positive + self.num_negative < 1:
            raise ValueError("PromptSampling: use_points needs at least one click.")
        if self.click_strategy not in ("uniform", "interior"):
            raise ValueError(f"unknown click_strategy {self.click_strategy!r}; use 'uniform' or 'interior'.")


@dataclass
class SamSegmentationTransform:
    """`dataset.set_transform(SamSegmentationTransform(image_size=...))` on binary-task rows.

    Each example becomes:
        pixel_values `(3, S, S)` float32 (SAM-normalised), labels `(1, S, S)` float32 0/1 mask in the
        model frame, input_points `(1, N, 2)` float32 `(x, y)` in the model frame, input_labels `(1, N)`
        int64, input_boxes `(1, 4)` (when boxes are on), original_sizes `(2,)`, reshaped_input_sizes `(2,)`,
        has_target (False when the target vanished in the model frame: then the prompt is padding-only;
        `to_binary_tasks(image_size=...)` drops such rows up front), plus case_id, slice, class_id,
        class_name; rows with an `adapted` mask (`to_binary_tasks(keep_adapted=True)`) give it as `adapted`
        `(1, S, S)` bool, resized and augmented with the mask.

    Attributes:
        image_size: the model's input size (`model.config.vision_config.image_size`).
        prompts: what to simulate.
        augment: flips/rotation/scale and intensity jitter (training only).
        window: CT window preset or (low, high) HU; default by modality (see `intensity_transform_for`).
        deterministic: same prompts for the same row every time (evaluation); otherwise fresh each access.
        seed: base seed of the prompt and augmentation streams.
        keep_original_mask: also return `target_original` `(H, W)` uint8, the mask at the image's own size
            (scoring at the original resolution; use `collate_ragged` when sizes differ).
        keep_thin_structures: a target that the resize to `image_size` loses (thinner than a model pixel)
            becomes the model pixels it covers (`covering_mask`), so it is prompted there and scored rather
            than left without a target (evaluation; not with `augment`).
    """

    image_size: int
    prompts: PromptSampling = field(default_factory=PromptSampling)
    augment: bool = False
    window: str | tuple[float, float] | None = None
    deterministic: bool = False
    seed: int = 0
    keep_original_mask: bool = False
    keep_thin_structures: bool = False
    spatial_augment: RandomSpatialAugment = field(default_factory=RandomSpatialAugment)
    intensity_jitter: IntensityJitter = field(default_factory=IntensityJitter)

    def __post_init__(self) -> None:
        self._calls = 0
        self._shared_seed: torch.Tensor | None = None

    def reseed(self, seed: int) -> None:
        """Make `seed` the base seed, here and in DataLoader workers that are already running.

        A training run reseeds its transform every epoch; persistent workers (kept between epochs so the GPU
        does not wait for them to restart) hold their own copy of the transform, so the seed lives in a
        one-number shared-memory tensor they all read. Call it before the workers start (the first epoch's
        reseed does) and between epochs, when no worker is mid-batch.
        """
        if self._shared_seed is None:
            self._shared_seed = torch.zeros((), dtype=torch.int64).share_memory_()
        self._shared_seed.fill_(seed)
        self.seed = seed

    def _base_seed(self) -> int:
        return self.seed if self._shared_seed is None else int(self._shared_seed)

    def _generators(self, example: Mapping[str, Any]) -> tuple[np.random.Generator, torch.Generator]:
        if self.deterministic:
            key = f"{example.get('case_id')}/{example.get('slice')}/{example.get('class_id')}"
            seed = [self._base_seed(), zlib.crc32(key.encode())]
        else:
            # torch.initial_seed differs per DataLoader worker and per epoch, so workers do not repeat prompts
            self._calls += 1
            seed = [self._base_seed(), torch.initial_seed() % 2**32, self._calls]
        rng = np.random.default_rng(seed)
        return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))

    def prepare_pixels(self, image: Any, modality: str) -> torch.Tensor:
        """`(H, W)` / `(H, W, 3)` raw pixels -> `(3, H, W)` float in [0, 1] (intensity by modality)."""
        array = np.asarray(image)
        intensity = intensity_transform_for(modality, array.dtype, self.window)
        if array.ndim == 3:  # RGB photographs: per-channel 8-bit scaling, no windowing
            scale = 65535.0 if array.dtype == np.uint16 else 255.0
            return torch.from_numpy(array.astype(np.float32) / scale).permute(2, 0, 1).contiguous()
        return GrayscaleToRGB()(intensity(torch.from_numpy(array.astype(np.float32))))

    def example(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Transform one binary-task row (image, mask, modality, ...) into model inputs."""
        rng, generator = self._generators(row)
        pixels = self.prepare_pixels(row["image"], row.get("modality", "other"))
        mask = torch.from_numpy(np.asarray(row["mask"]).astype(np.uint8))
        if mask.shape != pixels.shape[-2:]:
            raise ValueError(
                f"case {row.get('case_id')} slice {row.get('slice')}: mask {tuple(mask.shape)} and image "
                f"{tuple(pixels.shape[-2:])} differ in size."
            )
        original_size = tuple(mask.shape)
        # the union of the adapted structures, when the row has it, is moved exactly as the mask is
        layers = [mask] if "adapted" not in row else [mask, torch.from_numpy(np.asarray(row["adapted"]) > 0)]
        pixels, resized = resize_and_pad(
            pixels, torch.stack([layer.to(torch.uint8) for layer in layers]), self.image_size
        )
        if self.keep_thin_structures and not self.augment and not resized[0].any() and mask.any():
            resized = resized.clone()
            resized[0] = covering_mask(mask, self.image_size)
        valid = torch.zeros(self.image_size, self.image_size, dtype=torch.uint8)
        height, width = resized_shape(original_size, self.image_size)
        valid[:height, :width] = 1
        if self.augment:
            stacked = torch.cat([resized, valid[None]])
            pixels, stacked = self.spatial_augment(pixels, stacked, generator)
            resized, valid = stacked[:-1], stacked[-1]
            pixels = self.intensity_jitter(pixels, generator)
        mask, valid = resized[0], valid.bool()
        adapted = resized[1] if len(resized) > 1 else None
        out: dict[str, Any] = {
            "pixel_values": SamNormalize()(pixels),
            "labels": mask[None].float(),
            "original_sizes": torch.tensor(original_size),
            "reshaped_input_sizes": torch.tensor([height, width]),
        }
        if adapted is not None:
            out["adapted"] = adapted[None].bool()
        for key in ("case_id", "slice", "class_id", "class_name", "modality"):
            if key in row:
                out[key] = row[key]
        if self.keep_original_mask:
            out["target_original"] = torch.from_numpy(np.asarray(row["mask"]).astype(np.uint8))
        out["has_target"] = bool(mask.any())
        if not out["has_target"]:  # the target vanished (resize or augmentation): a padding-only prompt
            out.update(self._empty_prompts())
            return out
        if self.prompts.use_points:
            prompt = sample_point_prompt(
                mask,
                self.prompts.num_positive,
                self.prompts.num_negative,
                rng,
                self.prompts.click_strategy,
                valid,
            )
            out["input_points"] = torch.from_numpy(prompt.points)[None]
            out["input_labels"] = torch.from_numpy(prompt.labels)[None]
        if self.prompts.use_box:
            box = box_from_mask(mask, self.prompts.box_jitter, rng)
            out["input_boxes"] = torch.from_numpy(box)[None]
        return out

    def _empty_prompts(self) -> dict[str, torch.Tensor]:
        out = {}
        if self.prompts.use_points:
            count = self.prompts.num_positive + self.prompts.num_negative
            out["input_points"] = torch.zeros(1, count, 2)
            out["input_labels"] = torch.full((1, count), PADDING_LABEL, dtype=torch.int64)
        if self.prompts.use_box:
            out["input_boxes"] = torch.tensor([[0.0, 0.0, self.image_size - 1.0, self.image_size - 1.0]])
        return out

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        """The `set_transform` entry point: a dict of columns in, a dict of columns out."""
        size = len(next(iter(batch.values())))
        examples = [self.example({key: values[i] for key, values in batch.items()}) for i in range(size)]
        return {key: [example[key] for example in examples] for key in examples[0]}
