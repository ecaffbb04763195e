# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Interactive prediction on a volume, and 3-D propagation of one prompted slice's mask.

`VolumePredictor` holds the axial slices of one volume. Embeddings are computed on first use and cached:
with MSA's depth branch, a slice is encoded inside its window of D consecutive slices (slices
`[kD, (k+1)D)`), so the depth attention sees the real neighbours it was trained on; without one, slice by
slice on the CPU and eight slices at a time on a GPU (`batch_size`). Prompts are then decoded per slice, as SAM's predictor does.

`propagate` carries a mask from one slice through the volume: each neighbour is prompted with the box of
the previous slice's mask (its main parts: `main_parts`), grown by a margin (structures widen and narrow from
slice to slice), and the walk
stops where the mask vanishes or the IoU head's score drops below `stop_score`, in each direction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from msa_hf.inference.image_encoding import depth_branch_slices, encode_slices, image_to_pixel_values
from msa_hf.inference.placement import Placement
from msa_hf.inference.predictor import MaskPrediction, Prompt, SegmentationPredictor

DEFAULT_STOP_SCORE = 0.5  # the IoU head's score under which a propagated slice is not kept
# a slice whose mask grows more than this from its neighbour's ends a walk (a leak)
DEFAULT_MAX_AREA_RATIO = 3.0
# below this many pixels a mask's area ratio says little (the grown box's 2-pixel margin alone allows 5x)
MIN_AREA_FOR_RATIO = 64
# parts of a mask smaller than this share of its largest part do not widen the next slice's box: a few stray
# pixels far from the structure (a correction's clicks can leave them) would otherwise double the box
MIN_PART_SHARE = 0.1


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
    # slice -> `(4h, 4w)` low-resolution logits of each propagated slice's mask (the model frame): what a
    # correction on that slice gives back as its mask prompt, as SAM's iterative clicks do
    low_res: dict[int, np.ndarray] = field(default_factory=dict)
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


def main_parts(mask: np.ndarray, min_share: float = MIN_PART_SHARE) -> np.ndarray:
    """`mask` `(H, W)` without its specks: the connected parts (8-connected) of at least `min_share` of the
    largest part's area. A structure seen in several real parts keeps them all; an empty mask stays empty."""
    from scipy import ndimage

    parts, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return np.asarray(mask, bool)
    areas = np.bincount(parts.ravel())[1:]
    kept = np.flatnonzero(areas >= min_share * areas.max()) + 1
    return np.isin(parts, kept)


class VolumePredictor:
    """Encode the slices of a volume on demand (per depth window), decode prompts per slice, propagate."""

    def __init__(
        self,
        model: Any,
        window: str | tuple[float, float] | None = None,
        compile_encoder: bool = False,
        device: str | torch.device | Placement | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
        max_cached_bytes: int | None = None,
    ) -> None:
        # `max_cached_bytes`: the slice embeddings kept at most (the least recently used go first, and are
        # encoded again when asked for); None keeps every slice's, which a volume of 300 ViT-B slices holds in
        # 1.2 GB
        self.max_cached_bytes = max_cached_bytes
        self.window = window
        self.decoder = SegmentationPredictor(model, window, compile_encoder, device, dtype)
        self.model = self.decoder.model  # on the decoder's device
        self.depth = depth_branch_slices(model)
        self.batch_size = self.encoding_batch(batch_size)
        self._slices: np.ndarray | None = None
        self._modality = "other"
        self._embeddings: OrderedDict[int, torch.Tensor] = OrderedDict()  # least recently used first

    def encoding_batch(self, batch_size: int | None) -> int:
        """Slices encoded per encoder call: `batch_size` rounded up to whole depth windows; by default the
        placement's (`Placement.slices_per_encoding`: 8 on a GPU, on the CPU one slice, so one window with a
        depth branch). A slice is encoded with the aligned group of slices around it, before any of them is
        asked for."""
        depth = self.depth or 1
        if batch_size is None:
            batch_size = self.decoder.placement.slices_per_encoding
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: give a positive number of slices.")
        return -(-batch_size // depth) * depth

    def set_volume(self, slices: np.ndarray, modality: str = "other") -> None:
        """`slices` `(N, H, W)`: the axial display slices of one volume (`msa_hf.data.axial_slices`)."""
        slices = np.asarray(slices)
        if slices.ndim != 3 or 0 in slices.shape:
            raise ValueError(
                f"a volume's slices must be (N, H, W) with N, H, W > 0; got shape {slices.shape}."
            )
        self._slices, self._modality = slices, modality
        self.forget_embeddings()

    def forget_embeddings(self) -> None:
        """Drop every cached slice embedding (they are encoded again when asked for)."""
        self._embeddings = OrderedDict()

    @property
    def num_slices(self) -> int:
        return 0 if self._slices is None else len(self._slices)

    def _check_index(self, index: int) -> None:
        if self._slices is None:
            raise RuntimeError("call set_volume first.")
        if not 0 <= index < len(self._slices):
            raise ValueError(f"slice {index} is outside the volume's 0..{len(self._slices) - 1}.")

    def embedding(self, index: int) -> torch.Tensor:
        """Slice `index`'s embedding `(1, C, h, w)`, encoding its group of `batch_size` slices (whole depth
        windows, aligned to multiples of the group) on first use."""
        self._check_index(index)
        if index not in self._embeddings:
            start = index // self.batch_size * self.batch_size
            chosen = self._slices[start : start + self.batch_size]
            size = self.decoder.image_size
            pixel_values = torch.stack(
                [image_to_pixel_values(s, size, self._modality, self.window) for s in chosen]
            )
            embeddings = encode_slices(
                self.model, pixel_values, self.batch_size, placement=self.decoder.placement
            )
            for offset, embedding in enumerate(embeddings):
                self._embeddings[start + offset] = embedding[None]
            self._evict(keep=len(embeddings))
        self._embeddings.move_to_end(index)
        return self._embeddings[index]

    def _evict(self, keep: int) -> None:
        """Drop the least recently used embeddings beyond `max_cached_bytes`, never the `keep` just added."""
        if self.max_cached_bytes is None:
            return
        size = sum(e.element_size() * e.nelement() for e in self._embeddings.values())
        while len(self._embeddings) > keep and size > self.max_cached_bytes:
            _, dropped = self._embeddings.popitem(last=False)
            size -= dropped.element_size() * dropped.nelement()

    def predict(self, index: int, prompt: Prompt, multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """Slice `index`'s mask `(H, W)` bool for `prompt` (coordinates in the slice), and its IoU score
        (`multimask` as `SegmentationPredictor.predict`)."""
        prediction = self.predict_masks(index, prompt, multimask)
        return prediction.mask, prediction.score

    def predict_masks(
        self, index: int, prompt: Prompt, multimask: bool | None = None, mask_prompt: np.ndarray | None = None
    ) -> MaskPrediction:
        """Every mask the decoder gives for `prompt` on slice `index`, with logits and scores
        (`SegmentationPredictor.predict_masks`; `mask_prompt` a `MaskPrediction.low_res` mask)."""
        self.decoder.set_image_embedding(self.embedding(index), self._slices.shape[1:])
        return self.decoder.predict_masks(prompt, multimask=multimask, mask_prompt=mask_prompt)

    def propagate(
        self, index: int, mask: np.ndarray, seed_logits: np.ndarray | None = None, **rules: Any
    ) -> Propagation:
        """Carry `mask` `(H, W)` (slice `index`'s segmentation) up and down the volume: `propagate_seeds` with
        one seed, whose `rules` (stopping, margin, slice range, carried logits, probabilities) it takes.

        Each next slice is prompted with `grown_box(main_parts(previous mask), margin)` and, with
        `carry_logits`, the previous slice's low-resolution logits as SAM's mask prompt (`seed_logits` for the
        first step, when the seed came from the model). A direction ends at the volume's edge or the end of
        `slice_range` (first and last slice, inclusive), after `max_slices` slices, where the mask is empty,
        where it scores below `stop_score`, or where its area grows more than `max_area_ratio`-fold from the
        previous slice (a leak into a neighbour; shrinking is allowed, structures taper to their ends; masks
        under `MIN_AREA_FOR_RATIO` pixels are exempt; None: no area rule). `Propagation.stopped` says which,
        per direction. With `keep_probabilities`, `Propagation.probabilities` holds each propagated slice's
        probability map.
        """
        logits = None if seed_logits is None else {index: seed_logits}
        return self.propagate_seeds({index: mask}, seed_logits=logits, **rules)

    def propagate_seeds(
        self,
        seeds: dict[int, np.ndarray],
        stop_score: float = DEFAULT_STOP_SCORE,
        margin: float = 0.15,
        max_slices: int | None = None,
        slice_range: tuple[int, int] | None = None,
        keep_probabilities: bool = False,
        max_area_ratio: float | None = DEFAULT_MAX_AREA_RATIO,
        carry_logits: bool = True,
        seed_logits: dict[int, np.ndarray] | None = None,
        empty_slices: Iterable[int] = (),
    ) -> Propagation:
        """Propagate from several seed slices (`{slice: mask (H, W)}`; a corrected slice is one more seed).

        Seeds are kept as given. Between two seeds, each fills towards the other and the two walks meet
        halfway (each slice comes from its nearest seed); below the lowest and above the highest seed, the
        walk goes on as `propagate` does, with the same stopping rules. `empty_slices` are slices a correction
        cleared (the structure is not there): no walk enters them. `stopped` names each walk by its seed
        ("down from 12", "up from 12"; a single seed's are "down" and "up").
        """
        if not seeds:
            raise ValueError("propagation needs at least one seed slice with its mask.")
        if not 0.0 <= stop_score <= 1.0:
            raise ValueError(f"stop_score={stop_score}: the IoU head's scores lie in [0, 1]; give one there.")
        if max_area_ratio is not None and not max_area_ratio > 1.0:
            raise ValueError(
                f"max_area_ratio={max_area_ratio}: give a factor above 1 (or None for no area rule)."
            )
        order = sorted(int(i) for i in seeds)
        for index in order:
            self._check_index(index)
        count = len(self._slices)
        low, high = (0, count - 1) if slice_range is None else (int(v) for v in slice_range)
        if not 0 <= low <= order[0] <= order[-1] <= high < count:
            raise ValueError(
                f"slice_range={slice_range}: must hold the seed slices {order} and lie within 0-{count - 1}."
            )
        masks = np.zeros(self._slices.shape, bool)
        for index in order:
            seed = np.asarray(seeds[index], dtype=bool)
            if seed.shape != self._slices.shape[1:]:
                raise ValueError(
                    f"the seed mask of slice {index} has shape {seed.shape}, but the volume's slices are "
                    f"{self._slices.shape[1:]}."
                )
            if not seed.any():
                raise ValueError(
                    f"the seed mask is empty (slice {index}): segment the structure on a slice first, then propagate."
                )
            masks[index] = seed
        blocked = {int(i) for i in empty_slices}
        if blocked & set(order):
            raise ValueError(f"slices {sorted(blocked & set(order))} are both seeds and marked empty.")
        walk = _Walk(
            self, masks, np.full(count, np.nan), np.zeros(self._slices.shape, np.float32) if keep_probabilities else None,
            stop_score, margin, max_area_ratio, carry_logits, max_slices if max_slices is not None else count, blocked,
        )  # fmt: skip
        logits = seed_logits or {}
        single = len(order) == 1
        stopped: dict[str, str] = {}
        for position, index in enumerate(order):
            below = order[position - 1] if position > 0 else None
            above = order[position + 1] if position + 1 < len(order) else None
            # towards the neighbouring seed: up to the slice before halfway (the other seed fills the rest)
            down_end = low if below is None else (below + index) // 2 + 1
            up_end = high if above is None else (index + above) // 2
            for direction, end in ((-1, down_end), (1, up_end)):
                name = ("down" if direction < 0 else "up") + ("" if single else f" from {index}")
                reason = walk.run(
                    index,
                    direction,
                    end,
                    logits.get(index),
                    edge_is_seed=(below if direction < 0 else above) is not None,
                )
                if reason:
                    stopped[name] = reason
        filled = np.flatnonzero(masks.any(axis=(1, 2)))
        return Propagation(
            masks=masks, scores=walk.scores, first=int(filled.min()), last=int(filled.max()), stopped=stopped,
            probabilities=walk.probabilities, low_res=walk.low_res,
        )  # fmt: skip


class _Walk:
    """One volume's propagation state: the masks, scores and probabilities being filled, and the rules."""

    def __init__(
        self,
        predictor,
        masks,
        scores,
        probabilities,
        stop_score,
        margin,
        max_area_ratio,
        carry,
        limit,
        blocked,
    ):
        self.predictor, self.masks, self.scores, self.probabilities = predictor, masks, scores, probabilities
        self.low_res: dict[int, np.ndarray] = {}
        self.blocked: set[int] = blocked
        self.stop_score, self.margin, self.max_area_ratio, self.carry, self.limit = (
            stop_score, margin, max_area_ratio, carry, limit,
        )  # fmt: skip

    def run(
        self, seed: int, direction: int, end: int, seed_logits: np.ndarray | None, edge_is_seed: bool
    ) -> str:
        """Walk from `seed` in `direction` through slice `end` (inclusive); returns why it stopped ("" when it
        reached `end` because another seed takes over there)."""
        count = len(self.masks)
        previous, logits, position = self.masks[seed], seed_logits, seed + direction
        while True:
            if (position - end) * direction > 0:
                if edge_is_seed:
                    return ""
                edge = position < 0 or position >= count
                return (
                    "the volume's edge" if edge else f"the end of the slice range at {position - direction}"
                )
            if abs(position - seed) > self.limit:
                return f"the limit of {self.limit} slices"
            if position in self.blocked:
                return f"slice {position}, marked empty by a correction"
            prompt = Prompt(box=grown_box(main_parts(previous), self.margin))
            prediction = self.predictor.predict_masks(
                position, prompt, mask_prompt=logits if self.carry else None
            )
            predicted, score = prediction.mask, prediction.score
            if not predicted.any():
                return f"an empty mask at slice {position}"
            if score < self.stop_score:
                return f"slice {position} scored {score:.2f}, under the threshold {self.stop_score:.2f}"
            if self.max_area_ratio is not None and previous.sum() >= MIN_AREA_FOR_RATIO:
                ratio = float(predicted.sum()) / float(previous.sum())
                if ratio > self.max_area_ratio:  # growth, not shrinking: structures taper to their ends
                    return (
                        f"slice {position}: the mask grew {ratio:.1f}-fold from the previous slice (limit "
                        f"{self.max_area_ratio:g}, a leak into a neighbour)"
                    )
            self.masks[position], self.scores[position] = predicted, score
            if self.probabilities is not None:
                self.probabilities[position] = prediction.probabilities_of(prediction.best)
            self.low_res[position] = prediction.low_res[prediction.best]
            previous, logits, position = predicted, prediction.low_res[prediction.best], position + direction
