# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A depth-branch model sees a volume's slices at the spacing it was trained at.

MSA's depth branch attends across D consecutive slices, and what D slices span depends on the slice
spacing: eight slices of a 0.6 mm scan cover 5 mm of the body, of a 5 mm scan 40 mm. A model trained on
volumes at one slice spacing (`MsaProcessor.slice_spacing`, recorded by `train.py`) is therefore shown a
volume at another one resampled along its slice axis to that spacing, as nnU-Net resamples to its training
spacing. Only the slice axis moves: in-plane, a slice is resized to the encoder's side anyway, and prompts keep
their pixel coordinates.

`SliceResampling` is the map between the input's slices and the model's: the model grid starts at the
input's first slice and steps by the model's spacing up to its last, image slices are interpolated linearly
onto it, and masks come back onto the input's own slices (the prompted slice's mask as predicted there;
propagated masks by linear interpolation of their probabilities, kept where they reach 0.5, as a mask keeps
its logits above 0). A 2-D model sees one slice at a time, so its slice spacing never enters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# spacings within this share of the model's are used as they are: resampling a 2.0 mm scan for a model of
# 2.04 mm would only blur it
SPACING_TOLERANCE = 0.05


def spacings_differ(input_spacing: float, model_spacing: float | None) -> bool:
    """Whether slices `input_spacing` mm apart must be resampled for a model of `model_spacing` (None: a model
    that records none): they differ by more than `SPACING_TOLERANCE` of the model's."""
    return (
        model_spacing is not None and abs(input_spacing - model_spacing) > SPACING_TOLERANCE * model_spacing
    )


def interpolate_slices(volume: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of `volume` `(N, H, W)` at fractional slice `positions` `(M,)` in `[0, N - 1]`:
    `(M, H, W)` float32, slice `k` = `(1 - t) * volume[i] + t * volume[i + 1]` at `positions[k] = i + t`."""
    volume = np.asarray(volume)
    positions = np.clip(np.asarray(positions, dtype=np.float64), 0, len(volume) - 1)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, len(volume) - 1)
    weight = (positions - lower).astype(np.float32)[:, None, None]
    below, above = volume[lower].astype(np.float32), volume[upper].astype(np.float32)
    return below + weight * (above - below)


@dataclass(frozen=True)
class SliceResampling:
    """The slices of a volume of `input_count` slices `input_spacing` mm apart, on a model's grid of
    `model_spacing` mm.

    Model slice `j` lies at input position `j * model_spacing / input_spacing` (in input slices, from the
    first), for `j` in `[0, model_count)`; input slice `i` at model position `i * input_spacing /
    model_spacing`.
    """

    input_count: int
    input_spacing: float
    model_spacing: float

    def __post_init__(self) -> None:
        if self.input_count < 1:
            raise ValueError(f"a volume of {self.input_count} slices has nothing to resample.")
        for name in ("input_spacing", "model_spacing"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):
                raise ValueError(f"{name}={value}: a slice spacing must be a positive number of mm.")

    @classmethod
    def between(
        cls, input_count: int, input_spacing: float, model_spacing: float | None
    ) -> SliceResampling | None:
        """The resampling from a volume's slices to a model's, or None where none is needed: the model
        records no spacing (a 2-D model, or one trained by an older msa_hf), the volume has one slice, or
        the spacings agree within `SPACING_TOLERANCE`."""
        if input_count < 2 or not spacings_differ(input_spacing, model_spacing):
            return None
        return cls(int(input_count), float(input_spacing), float(model_spacing))

    @property
    def model_count(self) -> int:
        """Slices of the model grid: from the input's first slice to its last, `model_spacing` apart."""
        return int(np.floor((self.input_count - 1) * self.input_spacing / self.model_spacing + 1e-6)) + 1

    def model_positions(self) -> np.ndarray:
        """`(model_count,)`: each model slice's position in input slices."""
        return np.arange(self.model_count) * (self.model_spacing / self.input_spacing)

    def input_positions(self) -> np.ndarray:
        """`(input_count,)`: each input slice's position in model slices."""
        return np.arange(self.input_count) * (self.input_spacing / self.model_spacing)

    def nearest_input_slices(self) -> np.ndarray:
        """`(model_count,)` int: each model slice's nearest input slice (halves up, as `to_model_slice`), whose
        label map stands for the model slice's where labels cannot be interpolated."""
        return np.minimum(np.floor(self.model_positions() + 0.5 + 1e-9).astype(int), self.input_count - 1)

    def to_model_slice(self, index: int) -> int:
        """The model slice nearest to input slice `index` (where a prompt on that slice is decoded)."""
        position = index * self.input_spacing / self.model_spacing
        return int(min(np.floor(position + 0.5), self.model_count - 1))  # halves up, not to even

    def image_to_model(
        self, slices: np.ndarray, opt_out: str = "msa-hf predict --no-resample-slices"
    ) -> np.ndarray:
        """`(input_count, H, W)` image slices -> `(model_count, H, W)` float32, linearly interpolated.
        `opt_out` names the command line that skips the resampling, for the message of a grid over the
        voxel limit."""
        from msa_hf.data.size_limits import check_voxel_count

        self._check(slices, self.input_count, "input")
        check_voxel_count(
            (self.model_count, *np.shape(slices)[1:]),
            f"{self.describe()} ({opt_out} shows the model the slices as they are)",
        )
        return interpolate_slices(slices, self.model_positions())

    def probabilities_to_input(self, probabilities: np.ndarray) -> np.ndarray:
        """`(model_count, H, W)` probabilities (0 where a structure was not predicted) -> `(input_count, H, W)`
        float32 on the input's slices, linearly interpolated."""
        self._check(probabilities, self.model_count, "model")
        return interpolate_slices(probabilities, self.input_positions())

    def propagation_to_input(
        self, probabilities: np.ndarray, seeds: Mapping[int, tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A propagation on the model's grid back on the input's slices.

        `probabilities` `(model_count, H, W)`: the walks' maps (0 where no walk reached, and on the seeds'
        slices, filled here in place); `seeds` `{input slice: (probability map, mask)}`, each prompted on its
        model slice (`to_model_slice`; where two share one, the later wins). The maps are interpolated onto the
        input's slices and kept above one half (as a mask keeps its logits above 0), and each seed slice keeps
        its own mask. Returns `(masks, probabilities)`, `(input_count, H, W)` bool and float32."""
        for index, (seed_map, _) in seeds.items():
            probabilities[self.to_model_slice(index)] = seed_map
        back = self.probabilities_to_input(probabilities)
        masks = back > 0.5
        for index, (_, mask) in seeds.items():
            masks[index] = mask
        return masks, back

    def describe(self) -> str:
        """One line for a summary: the two spacings and slice counts."""
        return (
            f"{self.input_count} slices at {self.input_spacing:g} mm resampled to {self.model_count} at the "
            f"model's {self.model_spacing:g} mm"
        )

    @staticmethod
    def _check(volume: np.ndarray, count: int, grid: str) -> None:
        if np.ndim(volume) != 3 or len(volume) != count:
            raise ValueError(
                f"expected ({count}, H, W) slices on the {grid} grid, got shape {np.shape(volume)}."
            )
