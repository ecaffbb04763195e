# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Interactive prediction on a volume, and 3-D propagation of one prompted slice's mask.

`VolumePredictor` holds the axial slices of one volume. Embeddings are computed on first use and cached:
with MSA's depth branch, a slice is encoded inside its window of D consecutive slices (slices
`[kD, (k+1)D)`), so the depth attention sees the real neighbours it was trained on; without one, slice by
slice. Prompts are then decoded per slice, as SAM's predictor does.

`propagate` carries a mask from one slice through the volume: each neighbour is prompted with the box of
the previous slice's mask, grown by a margin (structures widen and narrow from slice to slice), and the walk
stops where the mask vanishes or the IoU head's score drops below `stop_score`, in each direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from msa_hf.inference.image_encoding import depth_branch_slices, encode_slices, image_to_pixel_values
from msa_hf.inference.predictor import MaskPrediction, Prompt, SegmentationPredictor


@dataclass
class Propagation:
    """A propagated structure: `masks` `(N, H, W)` bool over all slices, `scores` `(N,)` the IoU head's score
    per predicted slice (NaN where nothing was predicted), and the slice range `[first, last]` it covers."""

    masks: np.ndarray
    scores: np.ndarray
    first: int
    last: int
    # `(N, H, W)` float32 probability of each propagated slice's mask (0 elsewhere, and on the seed slice, whose
    # mask came from the caller), when `propagate(keep_probabilities=True)`
    probabilities: np.ndarray | None = None
    # why each direction ended ("up": towards higher slice indices): the volume's edge, the slice range or
    # limit, an empty mask, or a score under the threshold, with the slice where it happened
    stopped: dict[str, str] = field(default_factory=dict)

    def describe_stops(self) -> str:
        """One line: where and why propagation stopped in each direction."""
        return "; ".join(f"{direction}: {reason}" for direction, reason in self.stopped.items())


def grown_box(mask: np.ndarray, margin: float, min_margin: int = 2) -> list[float] | None:
    """The box `[x0, y0, x1, y1]` of `mask` `(H, W)`, grown on each side by `margin` of its size (at least
    `min_margin` pixels) and clipped to the image; `None` for an empty mask."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    height, width = mask.shape
    grow_y = max(min_margin, round(margin * (rows.max() - rows.min() + 1)))
    grow_x = max(min_margin, round(margin * (cols.max() - cols.min() + 1)))
    return [
        float(max(cols.min() - grow_x, 0)),
        float(max(rows.min() - grow_y, 0)),
        float(min(cols.max() + grow_x, width - 1)),
        float(min(rows.max() + grow_y, height - 1)),
    ]


class VolumePredictor:
    """Encode the slices of a volume on demand (per depth window), decode prompts per slice, propagate."""

    def __init__(
        self,
        model: Any,
        window: str | tuple[float, float] | None = None,
        compile_encoder: bool = False,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        self.window = window
        self.decoder = SegmentationPredictor(model, window, compile_encoder, device, dtype)
        self.model = self.decoder.model  # on the decoder's device
        self.depth = depth_branch_slices(model)
        self._slices: np.ndarray | None = None
        self._modality = "other"
        self._embeddings: dict[int, torch.Tensor] = {}

    def set_volume(self, slices: np.ndarray, modality: str = "other") -> None:
        """`slices` `(N, H, W)`: the axial display slices of one volume (`msa_hf.data.axial_slices`)."""
        slices = np.asarray(slices)
        if slices.ndim != 3 or 0 in slices.shape:
            raise ValueError(
                f"a volume's slices must be (N, H, W) with N, H, W > 0; got shape {slices.shape}."
            )
        self._slices, self._modality, self._embeddings = slices, modality, {}

    @property
    def num_slices(self) -> int:
        return 0 if self._slices is None else len(self._slices)

    def _check_index(self, index: int) -> None:
        if self._slices is None:
            raise RuntimeError("call set_volume first.")
        if not 0 <= index < len(self._slices):
            raise ValueError(f"slice {index} is outside the volume's 0..{len(self._slices) - 1}.")

    def embedding(self, index: int) -> torch.Tensor:
        """Slice `index`'s embedding `(1, C, h, w)`, encoding its whole depth window on first use."""
        self._check_index(index)
        if index not in self._embeddings:
            depth = self.depth or 1
            start = index // depth * depth
            chosen = self._slices[start : start + depth]
            size = self.decoder.image_size
            pixel_values = torch.stack(
                [image_to_pixel_values(s, size, self._modality, self.window) for s in chosen]
            )
            embeddings = encode_slices(self.model, pixel_values, placement=self.decoder.placement)
            for offset, embedding in enumerate(embeddings):
                self._embeddings[start + offset] = embedding[None]
        return self._embeddings[index]

    def predict(self, index: int, prompt: Prompt, multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """Slice `index`'s mask `(H, W)` bool for `prompt` (coordinates in the slice), and its IoU score
        (`multimask` as `SegmentationPredictor.predict`)."""
        prediction = self.predict_masks(index, prompt, multimask)
        return prediction.mask, prediction.score

    def predict_masks(self, index: int, prompt: Prompt, multimask: bool | None = None) -> MaskPrediction:
        """Every mask the decoder gives for `prompt` on slice `index`, with logits and scores
        (`SegmentationPredictor.predict_masks`)."""
        self.decoder.set_image_embedding(self.embedding(index), self._slices.shape[1:])
        return self.decoder.predict_masks(prompt, multimask=multimask)

    def propagate(
        self,
        index: int,
        mask: np.ndarray,
        stop_score: float = 0.5,
        margin: float = 0.15,
        max_slices: int | None = None,
        slice_range: tuple[int, int] | None = None,
        keep_probabilities: bool = False,
    ) -> Propagation:
        """Carry `mask` `(H, W)` (slice `index`'s segmentation) up and down the volume.

        Each next slice is prompted with `grown_box(previous mask, margin)`; a direction ends at the volume's
        edge or the end of `slice_range` (first and last slice, inclusive), after `max_slices` slices, or where
        the mask is empty or scores below `stop_score`. `Propagation.stopped` says which, per direction.
        With `keep_probabilities`, `Propagation.probabilities` holds each propagated slice's probability map.
        """
        self._check_index(index)
        if not 0.0 <= stop_score <= 1.0:
            raise ValueError(f"stop_score={stop_score}: the IoU head's scores lie in [0, 1]; give one there.")
        low, high = (0, len(self._slices) - 1) if slice_range is None else (int(v) for v in slice_range)
        if not 0 <= low <= index <= high < len(self._slices):
            raise ValueError(
                f"slice_range={slice_range}: must hold the seed slice {index} and lie within 0-"
                f"{len(self._slices) - 1}."
            )
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self._slices.shape[1:]:
            raise ValueError(
                f"the seed mask has shape {mask.shape}, but the volume's slices are {self._slices.shape[1:]}."
            )
        if not mask.any():
            raise ValueError(
                "the seed mask is empty: segment the structure on a slice first, then propagate."
            )
        masks = np.zeros(self._slices.shape, bool)
        scores = np.full(len(self._slices), np.nan)
        masks[index] = mask
        probabilities = np.zeros(self._slices.shape, np.float32) if keep_probabilities else None
        first = last = index
        limit = max_slices if max_slices is not None else len(self._slices)
        stopped: dict[str, str] = {}
        for direction, name in ((1, "up"), (-1, "down")):
            previous, position = mask, index + direction
            while True:
                if not low <= position <= high:
                    edge = position < 0 or position >= len(self._slices)
                    stopped[name] = (
                        "the volume's edge"
                        if edge
                        else f"the end of the slice range at {position - direction}"
                    )
                    break
                if abs(position - index) > limit:
                    stopped[name] = f"the limit of {limit} slices"
                    break
                prediction = self.predict_masks(position, Prompt(box=grown_box(previous, margin)))
                predicted, score = prediction.mask, prediction.score
                if not predicted.any():
                    stopped[name] = f"an empty mask at slice {position}"
                    break
                if score < stop_score:
                    stopped[name] = (
                        f"slice {position} scored {score:.2f}, under the threshold {stop_score:.2f}"
                    )
                    break
                masks[position], scores[position] = predicted, score
                if probabilities is not None:
                    probabilities[position] = prediction.probabilities[prediction.best]
                first, last = min(first, position), max(last, position)
                previous, position = predicted, position + direction
        return Propagation(
            masks=masks, scores=scores, first=first, last=last, stopped=stopped, probabilities=probabilities
        )
