# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The frames a volume's prompts may be given in.

`display` (the default) is the frame msa_hf shows a volume in and predicts in: the volume turned to RAS+ and cut
into slices of one plane (`msa_hf.data.planes.display_slices`; axial unless the scan was acquired in another
plane). On axial slices, slice 0 is the most inferior slice, x counts columns from the patient's left side
(the patient's left is on the left of the picture, the neurological convention) and y counts rows from the
anterior side; `msa_hf.data.planes` gives the coronal and sagittal conventions. The demo's clicks, the prompts
taken from label maps and every slice number msa_hf prints are in this frame.

`voxel` is the input's own grid. For a NIfTI file, its voxel indices, as numpy
(`nibabel.load(path).dataobj[i, j, k]`), ITK-SNAP's cursor and 3D Slicer's IJK coordinates give them: a point
`(i, j)` on slice `k` is voxel `(i, j, k)` of the file, and a box is `[i0, j0, i1, j1]`. For a DICOM series, what
a viewer or a PACS shows: slice `k` is the image whose InstanceNumber is `k` (the image number in a viewer's
overlay), and `(i, j)` its pixel's column and row. The input's own slices are cut in the plane its third axis
runs across (its acquisition plane: axial for a third axis running inferior-superior), so that each of them is
one of the display slices; voxel prompts with another `--plane` are refused. Reading a viewer's coordinates in the display
frame instead would mirror them: a DICOM viewer shows the patient's left on the right of an axial image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from msa_hf.data.planes import DIRECTIONS, LAYOUTS, Plane, check_plane, plane_along

if TYPE_CHECKING:  # the command line reads PROMPT_FRAMES without loading torch
    from msa_hf.inference.predictor import Prompt

PromptFrame = Literal["display", "voxel"]
PROMPT_FRAMES: tuple[PromptFrame, ...] = ("display", "voxel")


@dataclasses.dataclass(frozen=True)
class VoxelToDisplay:
    """The map from an input's own voxel indices `(i, j, k)` to the display frame `(x, y, slice)` of `plane`,
    the plane the input's slices lie in.

    `axes[a]` is the RAS+ axis that input axis `a` becomes, `flips[a]` whether it runs backwards there
    (nibabel's `io_orientation`, which `as_closest_canonical` applies when msa_hf reads the input); `shape` is
    the input's `(I, J, K)`. `instances` (DICOM) are the numbers of its slices in `k` order (`numbered_by`:
    a series' InstanceNumbers, an enhanced multi-frame file's frame numbers),
    which name the slices instead of `k`.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]
    instances: tuple[int, ...] | None = None
    numbered_by: str = "InstanceNumber"
    plane: Plane = "axial"

    @classmethod
    def of_affine(
        cls,
        affine: np.ndarray,
        shape: tuple[int, ...],
        source: str,
        instances: tuple[int, ...] | None = None,
        numbered_by: str = "InstanceNumber",
        plane: str = "auto",
    ) -> VoxelToDisplay:
        """The map of a grid of `shape` on `affine` (voxel -> RAS mm) onto the slices of `plane`: the plane the
        grid's third axis runs across ("auto": that one). Raises `ValueError` for another plane, whose slices
        are not the input's."""
        import nibabel as nib

        check_plane(plane, ("auto", *LAYOUTS))
        orientation = nib.orientations.io_orientation(affine)
        axes = tuple(int(a) for a in orientation[:, 0])
        own = plane_along(axes[2])
        if plane not in ("auto", own):
            raise ValueError(
                f"{source}: its third voxel axis runs {DIRECTIONS[axes[2]]}, so its slices are {own}, not {plane}; "
                f"voxel prompts name those slices. Use --plane {own} (or auto), or give the prompts in the display "
                f"frame of {plane} slices (--prompt-frame display: the slices msa-hf and its demo show)."
            )
        flips = tuple(bool(f < 0) for f in orientation[:, 1])
        return cls(axes, flips, tuple(int(s) for s in shape[:3]), instances, numbered_by, own)  # type: ignore[arg-type]

    @classmethod
    def of_file(cls, path: str | Path, plane: str = "auto") -> VoxelToDisplay:
        """The map of the volume file (NIfTI, NRRD, MetaImage) at `path`, read from its header (`plane` as
        `of_affine`'s)."""
        from msa_hf.data.volumes import volume_file_header

        affine, shape = volume_file_header(path)
        return cls.of_affine(affine, shape, str(path), plane=plane)

    @classmethod
    def of_series(cls, folder: str | Path, series: str | None = None, plane: str = "auto") -> VoxelToDisplay:
        """The map of the DICOM series in `folder` (or the stack `series` names there): `i` = column, `j` = row
        of the image whose InstanceNumber is `k`; for an enhanced multi-frame file (which `folder` may also
        name itself), of its frame number `k` (from 1, as a viewer counts them). Raises `ValueError` where the
        series' images do not have one InstanceNumber each."""
        from msa_hf.data.dicom_stacks import read_stack

        images = read_stack(folder, series)  # `folder` may be an enhanced file itself
        if images.enhanced is not None:
            numbers = tuple(frame + 1 for frame in images.enhanced.order)
            return cls.of_affine(
                images.affine, images.shape, str(images.enhanced.file), numbers, "frame number", plane
            )
        numbers = [dataset.get("InstanceNumber") for _, dataset in images.slices]
        if any(number is None for number in numbers) or len({int(n) for n in numbers}) != len(numbers):
            raise ValueError(
                f"{folder}: its images do not each carry an InstanceNumber of their own, so a slice cannot be "
                "named by it; give the prompts in the display frame (--prompt-frame display)."
            )
        return cls.of_affine(
            images.affine, images.shape, str(folder), tuple(int(n) for n in numbers), plane=plane
        )

    def _canonical(self, i: float, j: float, k: float) -> list[float]:
        """`(i, j, k)` as RAS+ indices `(x, y, z)`."""
        ras = [0.0, 0.0, 0.0]
        for axis, value in enumerate((i, j, k)):
            ras[self.axes[axis]] = self.shape[axis] - 1 - value if self.flips[axis] else value
        return ras

    def point(self, i: float, j: float, k: int) -> tuple[float, float, int]:
        """Voxel `(i, j)` on the input's slice `k` as display `(x, y)` on display slice `z`: `(x, y, z)`."""
        ras = self._canonical(i, j, self._index(k))
        layout = LAYOUTS[self.plane]

        # a display axis runs backwards from its RAS axis where the plane's layout flips it
        def along(axis: int, flipped: bool) -> float:
            return self.shape[self.axes.index(axis)] - 1 - ras[axis] if flipped else ras[axis]

        x = along(layout.column_axis, layout.columns_flipped)
        y = along(layout.row_axis, layout.rows_flipped)
        return x, y, int(ras[layout.slice_axis])

    def display_slice(self, k: int) -> int:
        """The input's slice `k` as a display slice (display slices run along their RAS axis, ascending)."""
        index = self._index(k)
        return self.shape[2] - 1 - index if self.flips[2] else index

    def file_slice(self, z: int) -> int:
        """Display slice `z` as the input's own slice number (a DICOM series': an InstanceNumber)."""
        index = self.shape[2] - 1 - z if self.flips[2] else z
        return self.instances[index] if self.instances is not None else index

    def slice_names(self) -> str:
        """The input's slice numbers, as a message gives them."""
        if self.instances is None:
            return f"slices 0 to {self.shape[2] - 1}"
        return f"images with {self.numbered_by}s {min(self.instances)} to {max(self.instances)}"

    def _index(self, k: int) -> int:
        """The input's slice `k` as its index along the third axis."""
        if self.instances is None:
            if not 0 <= k < self.shape[2]:
                raise ValueError(f"prompt slice {k}: the input has {self.slice_names()}.")
            return int(k)
        if k not in self.instances:
            raise ValueError(f"prompt slice {k}: the series has no image of that {self.numbered_by}; it has "
                             f"{self.slice_names()}.")  # fmt: skip
        return self.instances.index(k)

    def prompt(self, prompt: Prompt) -> Prompt:
        """`prompt` (points, box and slice in voxel indices) in the display frame; a prompt without a slice is
        returned as it is (a volume's prompt needs one, which `predict_file` says)."""
        if prompt.slice is None:
            return prompt
        self._index(prompt.slice)  # a slice the input has
        points = None
        if prompt.points:
            points = [list(self.point(i, j, prompt.slice)[:2]) for i, j in prompt.points]
        box = None
        if prompt.box is not None:
            i0, j0, i1, j1 = prompt.box
            corners = np.array([self.point(i, j, prompt.slice)[:2] for i, j in ((i0, j0), (i1, j1))])
            box = [*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist()]
        return dataclasses.replace(prompt, points=points, box=box, slice=self.display_slice(prompt.slice))


def voxel_frame(
    input_path: str | Path, frame: PromptFrame, series: str | None = None, plane: str = "auto"
) -> VoxelToDisplay | None:
    """The map from `frame` to the display frame of `plane` for the input at `input_path` (a DICOM folder's
    stack: `series`), whose own `plane` ("auto": the input's acquisition plane) it records: None where prompts
    are given in the display frame already.

    Raises:
        ValueError: an unknown frame, voxel prompts for a 2-D image (its pixels are its frame already), or for a
            plane other than the volume's own, or a DICOM series whose images are not numbered one each.
    """
    from msa_hf.data.volumes import is_dicom_stack_source, is_volume_file

    if frame not in PROMPT_FRAMES:
        raise ValueError(f"prompt frame {frame!r}: expected one of {', '.join(PROMPT_FRAMES)}.")
    if frame == "display":
        return None
    if is_volume_file(input_path):
        return VoxelToDisplay.of_file(input_path, plane)
    if is_dicom_stack_source(input_path):
        return VoxelToDisplay.of_series(input_path, series, plane)
    raise ValueError(
        f"--prompt-frame voxel: {input_path} is not a volume; voxel prompts name a volume file's voxels or a DICOM "
        "series' pixels. Give an image's prompts in its own pixels."
    )


def prompts_in_display_frame(
    prompts: list[Prompt],
    input_path: str | Path,
    frame: PromptFrame,
    series: str | None = None,
    plane: str = "auto",
) -> list[Prompt]:
    """`prompts` given in `frame` for the input at `input_path`, in the display frame that `predict_file` reads
    (`voxel_frame` says what is refused). Voxel prompts land on the input's own plane: predict with
    `plane=voxel_frame(...).plane` (its acquisition plane, which "auto" may not choose for a near-square scan)."""
    to_display = voxel_frame(input_path, frame, series, plane)
    return prompts if to_display is None else [to_display.prompt(prompt) for prompt in prompts]
