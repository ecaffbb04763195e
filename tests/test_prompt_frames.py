"""Prompts in a NIfTI file's own voxel indices land on the voxels they name, whatever the file's orientation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from msa_hf.cli import main
from msa_hf.data.volumes import axial_slices, load_volume
from msa_hf.inference.predictor import Prompt
from msa_hf.inference.prompt_frames import VoxelToDisplay, prompts_in_display_frame

# axial files: as stored by scanners and converters (LPS-like flips, in-plane axes swapped, all flipped)
AXIAL_AFFINES = {
    "RAS": np.diag([0.8, 0.9, 2.5, 1.0]),
    "LPS": np.diag([-0.8, -0.9, 2.5, 1.0]),
    "swapped in-plane, inferior-going": np.array(
        [[0.0, 0.9, 0.0, 4.0], [-0.8, 0.0, 0.0, 2.0], [0.0, 0.0, -2.5, 9.0], [0.0, 0.0, 0.0, 1.0]]
    ),
}


def _marked_file(tmp_path, affine, marks):
    data = np.zeros((14, 11, 6), np.float32)
    for value, index in marks.items():
        data[index] = value
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize("name", list(AXIAL_AFFINES))
def test_a_voxel_point_and_box_land_on_the_voxels_they_name(tmp_path, name):
    marks = {100.0: (3, 7, 2), 200.0: (10, 2, 2), 300.0: (5, 5, 4)}
    path = _marked_file(tmp_path, AXIAL_AFFINES[name], marks)
    slices = axial_slices(load_volume(path).array)  # the display frame predict_file works in
    for value, (i, j, k) in marks.items():
        (prompt,) = prompts_in_display_frame([Prompt(points=[[i, j]], slice=k)], path, "voxel")
        (x, y) = prompt.points[0]
        assert slices[prompt.slice, int(y), int(x)] == value
    (i0, j0, _), (i1, j1, k) = marks[100.0], marks[200.0]
    (boxed,) = prompts_in_display_frame([Prompt(box=[i0, j0, i1, j1], slice=k)], path, "voxel")
    x0, y0, x1, y1 = (int(v) for v in boxed.box)
    assert x0 <= x1 and y0 <= y1
    corners = {slices[boxed.slice, y, x] for y in (y0, y1) for x in (x0, x1)}
    assert {100.0, 200.0} <= corners  # the two marked voxels are opposite corners of the box
    assert prompts_in_display_frame([prompt], path, "display") == [prompt]


def test_voxel_prompts_are_refused_where_they_name_no_file_grid(tmp_path):
    sagittal = np.array(
        [[0.0, 0.0, 2.5, 0.0], [0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    path = _marked_file(tmp_path, sagittal, {})
    with pytest.raises(ValueError, match="third voxel axis runs left-right"):
        VoxelToDisplay.of_file(path)
    axial = _marked_file(tmp_path, AXIAL_AFFINES["RAS"], {})
    with pytest.raises(ValueError, match="the file has slices 0 to 5"):
        prompts_in_display_frame([Prompt(points=[[1, 1]], slice=6)], axial, "voxel")
    with pytest.raises(ValueError, match="not a NIfTI file"):
        prompts_in_display_frame([Prompt(points=[[1, 1]])], tmp_path / "x.png", "voxel")


def test_predict_with_voxel_prompts_writes_the_mask_of_the_display_prompt(tiny_base, tmp_path, capsys):
    data = np.full((30, 26, 6), 40.0, np.float32)
    data[6:16, 12:22, 1:5] = 400.0  # a bright block to segment
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, AXIAL_AFFINES["swapped in-plane, inferior-going"]), path)
    voxel = Prompt(box=[6, 12, 15, 21], slice=3)
    (display,) = prompts_in_display_frame([voxel], path, "voxel")
    assert display.slice != voxel.slice  # the file runs inferior-going: its slice 3 is display slice 2
    common = ["--device", "cpu"]
    assert main(["predict", str(tiny_base), str(path), str(tmp_path / "voxel.nii.gz"), "--prompt-frame", "voxel",
                 "--box", "6", "12", "15", "21", "--slice", "3", *common]) == 0  # fmt: skip
    assert "label 1 slice 3:" in capsys.readouterr().out  # printed in the file's slices, as asked
    assert main(["predict", str(tiny_base), str(path), str(tmp_path / "display.nii.gz"),
                 "--box", *(str(v) for v in display.box), "--slice", str(display.slice), *common]) == 0  # fmt: skip
    voxel_mask = np.asarray(nib.load(tmp_path / "voxel.nii.gz").dataobj)
    assert np.array_equal(voxel_mask, np.asarray(nib.load(tmp_path / "display.nii.gz").dataobj))
    assert voxel_mask[..., 3].any() and not voxel_mask[..., [0, 1, 2, 4, 5]].any()  # on the file's slice 3
