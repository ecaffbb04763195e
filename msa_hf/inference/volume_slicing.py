# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A volume as a user prompts it and as a model sees it.

`msa-hf predict` and the demo both cut a volume into the slices of one plane (`msa_hf.data.planes`), which the
user prompts and which slice numbers name, and show the model those slices, resampled along the slice axis to
a depth-branch model's training spacing where they lie off it (`msa_hf.inference.slice_spacing`).
`SlicedVolume.cut` makes that choice once, with what is worth saying about it (pixels far from square, a plane
the model was never adapted on), so both entry points read and answer a volume alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msa_hf.data.planes import (
    Plane,
    choose_plane,
    display_slices,
    pixel_note,
    plane_spacing,
    unseen_plane_note,
    volume_from_display_slices,
)
from msa_hf.data.volumes import Volume, tilt_note
from msa_hf.inference.slice_spacing import SliceResampling


@dataclass
class SlicedVolume:
    """`slices` `(N, H, W)`: the display slices of `plane` a user prompts; `model_slices` `(M, H, W)`: what the
    model sees (the same array unless `resampling`); `notes`: what to say about the cut (`volumes.tilt_note`,
    `planes.pixel_note`, `planes.unseen_plane_note`), in that order, the absent ones left out."""

    plane: Plane
    slices: np.ndarray
    model_slices: np.ndarray
    resampling: SliceResampling | None
    notes: list[str]

    @classmethod
    def cut(
        cls,
        volume: Volume,
        plane: str = "auto",
        slice_spacing: float | None = None,
        trained_planes: Iterable[str] | None = None,
        source: str | Path | None = None,
    ) -> SlicedVolume:
        """`volume` cut into `plane` slices ("auto": `planes.choose_plane`), resampled for a depth-branch model
        of training `slice_spacing` (None: as they are), with notes naming `source` (default: the volume's)."""
        chosen = choose_plane(volume.spacing, plane)
        source = volume.source if source is None else source
        notes = [
            tilt_note(volume.affine, source),
            pixel_note(volume.spacing, chosen, source),
            unseen_plane_note(chosen, trained_planes, source),
        ]
        slices = display_slices(volume.array, chosen)
        resampling = SliceResampling.between(
            len(slices), plane_spacing(volume.spacing, chosen)[2], slice_spacing
        )
        model_slices = slices if resampling is None else resampling.image_to_model(slices)
        return cls(chosen, slices, model_slices, resampling, [note for note in notes if note])

    def model_slice(self, index: int) -> int:
        """The model's slice where a prompt on display slice `index` is decoded."""
        return index if self.resampling is None else self.resampling.to_model_slice(index)

    def to_volume(self, slices: np.ndarray) -> np.ndarray:
        """`(N, H, W)` maps on the display slices (masks, probabilities) as RAS+ `(X, Y, Z)`."""
        return volume_from_display_slices(slices, self.plane)
