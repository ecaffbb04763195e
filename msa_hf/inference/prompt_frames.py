# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The frames a volume's prompts may be given in.

`display` (the default) is the frame msa_hf shows a volume in and predicts in: the volume turned to RAS+ and cut
into axial slices (`msa_hf.data.volumes.axial_slices`). Slice 0 is the most inferior slice; on a slice, x counts
columns from the patient's left side (the patient's left is on the left of the picture, the neurological
convention) and y counts rows from the anterior side. The demo's clicks, the prompts taken from label maps and
every slice number msa_hf prints are in this frame.

`voxel` is the NIfTI file's own voxel grid, as numpy (`nibabel.load(path).dataobj[i, j, k]`), ITK-SNAP's
cursor and 3D Slicer's IJK coordinates give it: a point `(i, j)` on slice `k` is voxel `(i, j, k)` of the file,
and a box is `[i0, j0, i1, j1]`. The file's third axis must run inferior-superior (an axial scan), so that its
slice `k` is one of the display slices.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # the command line reads PROMPT_FRAMES without loading torch
    from msa_hf.inference.predictor import Prompt

PromptFrame = Literal["display", "voxel"]
PROMPT_FRAMES: tuple[PromptFrame, ...] = ("display", "voxel")
_DIRECTIONS = ("left-right", "posterior-anterior", "inferior-superior")


@dataclasses.dataclass(frozen=True)
class VoxelToDisplay:
    """The map from a NIfTI file's voxel indices `(i, j, k)` to the display frame `(x, y, slice)`.

    `axes[a]` is the RAS+ axis that file axis `a` becomes, `flips[a]` whether it runs backwards there
    (nibabel's `io_orientation`, which `as_closest_canonical` applies when msa_hf reads the file); `shape` is
    the file's `(I, J, K)`.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]

    @classmethod
    def of_file(cls, path: str | Path) -> VoxelToDisplay:
        """The map of the NIfTI file at `path`, read from its header. Raises `ValueError` for a file whose third
        axis is not its inferior-superior one."""
        import nibabel as nib

        image = nib.load(str(path))
        orientation = nib.orientations.io_orientation(image.affine)
        axes = tuple(int(a) for a in orientation[:, 0])
        if axes[2] != 2:
            raise ValueError(
                f"{path}: its third voxel axis runs {_DIRECTIONS[axes[2]]}, so its slices are not axial; voxel "
                "prompts need an axial scan. Give the prompts in the display frame (--prompt-frame display: "
                "the slices msa-hf and its demo show)."
            )
        flips = tuple(bool(f < 0) for f in orientation[:, 1])
        return cls(axes, flips, tuple(int(s) for s in image.shape[:3]))  # type: ignore[arg-type]

    def _canonical(self, i: float, j: float, k: float) -> list[float]:
        """`(i, j, k)` as RAS+ indices `(x, y, z)`."""
        ras = [0.0, 0.0, 0.0]
        for axis, value in enumerate((i, j, k)):
            ras[self.axes[axis]] = self.shape[axis] - 1 - value if self.flips[axis] else value
        return ras

    def point(self, i: float, j: float, k: int) -> tuple[float, float, int]:
        """Voxel `(i, j)` on file slice `k` as display `(x, y)` on display slice `z`: `(x, y, z)`."""
        x, y, z = self._canonical(i, j, k)
        height = self.shape[self.axes.index(1)]  # the display rows run anterior to posterior
        return x, height - 1 - y, int(z)

    def display_slice(self, k: int) -> int:
        """The file's slice `k` as a display slice (slice 0 the most inferior)."""
        return self.shape[2] - 1 - k if self.flips[2] else k

    # the map reverses the slice order or keeps it, so it is its own inverse
    file_slice = display_slice

    def prompt(self, prompt: Prompt) -> Prompt:
        """`prompt` (points, box and slice in voxel indices) in the display frame; a prompt without a slice is
        returned as it is (a volume's prompt needs one, which `predict_file` says)."""
        if prompt.slice is None:
            return prompt
        if not 0 <= prompt.slice < self.shape[2]:
            raise ValueError(f"prompt slice {prompt.slice}: the file has slices 0 to {self.shape[2] - 1}.")
        points = None
        if prompt.points:
            points = [list(self.point(i, j, prompt.slice)[:2]) for i, j in prompt.points]
        box = None
        if prompt.box is not None:
            i0, j0, i1, j1 = prompt.box
            corners = np.array([self.point(i, j, prompt.slice)[:2] for i, j in ((i0, j0), (i1, j1))])
            box = [*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist()]
        return dataclasses.replace(prompt, points=points, box=box, slice=self.display_slice(prompt.slice))


def voxel_frame(input_path: str | Path, frame: PromptFrame) -> VoxelToDisplay | None:
    """The map from `frame` to the display frame for the input at `input_path`: None where prompts are given
    in the display frame already.

    Raises:
        ValueError: an unknown frame, voxel prompts for an input other than a NIfTI file (a 2-D image's pixels
            are its frame already; a DICOM series has no file grid to name), or for a non-axial NIfTI.
    """
    from msa_hf.data.volumes import is_nifti

    if frame not in PROMPT_FRAMES:
        raise ValueError(f"prompt frame {frame!r}: expected one of {', '.join(PROMPT_FRAMES)}.")
    if frame == "display":
        return None
    if not is_nifti(input_path):
        raise ValueError(
            f"--prompt-frame voxel: {input_path} is not a NIfTI file; voxel prompts name a NIfTI file's voxels. "
            "Give an image's prompts in its own pixels and a DICOM series' in the display frame."
        )
    return VoxelToDisplay.of_file(input_path)


def prompts_in_display_frame(
    prompts: list[Prompt], input_path: str | Path, frame: PromptFrame
) -> list[Prompt]:
    """`prompts` given in `frame` for the input at `input_path`, in the display frame that `predict_file` reads
    (`voxel_frame` says what is refused)."""
    to_display = voxel_frame(input_path, frame)
    return prompts if to_display is None else [to_display.prompt(prompt) for prompt in prompts]
