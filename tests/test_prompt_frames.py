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


# files acquired in another plane: their third axis runs left-right (sagittal) or front-back (coronal)
OTHER_PLANES = {
    "sagittal": np.array(
        [[0.0, 0.0, 2.5, 0.0], [0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    ),
    "sagittal, flipped": np.array(
        [[0.0, 0.0, -2.5, 0.0], [-0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    ),
    "coronal": np.array(
        [[0.8, 0.0, 0.0, 0.0], [0.0, 0.0, -2.5, 0.0], [0.0, -0.9, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    ),
}


@pytest.mark.parametrize("name", list(OTHER_PLANES))
def test_voxel_prompts_of_a_scan_acquired_in_another_plane_land_on_its_own_slices(tmp_path, name):
    from msa_hf.data.planes import display_slices

    marks = {100.0: (3, 7, 2), 200.0: (10, 2, 2), 300.0: (5, 5, 4)}
    path = _marked_file(tmp_path, OTHER_PLANES[name], marks)
    frame = VoxelToDisplay.of_file(path)
    assert frame.plane == name.split(",")[0]
    slices = display_slices(load_volume(path).array, frame.plane)
    assert len(slices) == 6  # the file's own slices
    for value, (i, j, k) in marks.items():
        (prompt,) = prompts_in_display_frame([Prompt(points=[[i, j]], slice=k)], path, "voxel")
        (x, y) = prompt.points[0]
        assert slices[prompt.slice, int(y), int(x)] == value
        assert frame.file_slice(prompt.slice) == k


def test_voxel_prompts_are_refused_where_they_name_no_file_grid(tmp_path):
    sagittal = np.array(
        [[0.0, 0.0, 2.5, 0.0], [0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    path = _marked_file(tmp_path, sagittal, {})
    with pytest.raises(
        ValueError, match="third voxel axis runs left-right, so its slices are sagittal, not axial"
    ):
        VoxelToDisplay.of_file(path, plane="axial")  # voxel prompts name the file's own (sagittal) slices
    assert VoxelToDisplay.of_file(path).plane == "sagittal"
    axial = _marked_file(tmp_path, AXIAL_AFFINES["RAS"], {})
    with pytest.raises(ValueError, match="the input has slices 0 to 5"):
        prompts_in_display_frame([Prompt(points=[[1, 1]], slice=6)], axial, "voxel")
    with pytest.raises(ValueError, match="is not a volume"):
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


# axial series as scanners write them: the usual orientation, and one read feet-first with rows flipped
SERIES_ORIENTATIONS = {"usual": (1, 0, 0, 0, 1, 0), "flipped rows, slices going down": (1, 0, 0, 0, -1, 0)}


@pytest.mark.parametrize("name", list(SERIES_ORIENTATIONS))
def test_a_dicom_viewers_pixel_on_an_instance_lands_on_that_pixel(tmp_path, name):
    """`--prompt-frame voxel` on a DICOM series: column i, row j of the image numbered k (InstanceNumber, as a
    viewer's overlay shows it, here counting down from the top of the body) name that pixel of that image."""
    from msa_hf.testing import write_dicom_series

    volume = np.zeros((6, 12, 16), np.float32)  # (slices, rows, columns) as stored
    marks = {100.0: (2, 3, 7), 200.0: (2, 10, 2), 300.0: (4, 5, 5)}  # value: (slice index, row, column)
    for value, (k, row, column) in marks.items():
        volume[k, row, column] = value
    numbers = [40 - k for k in range(6)]  # slice index k is image 40 - k
    write_dicom_series(
        tmp_path / "series", volume, orientation=SERIES_ORIENTATIONS[name], instance_numbers=numbers
    )
    slices = axial_slices(load_volume(tmp_path / "series").array)
    for value, (k, row, column) in marks.items():
        (prompt,) = prompts_in_display_frame(
            [Prompt(points=[[column, row]], slice=numbers[k])], tmp_path / "series", "voxel"
        )
        (x, y) = prompt.points[0]
        assert slices[prompt.slice, int(y), int(x)] == value
    to_display = VoxelToDisplay.of_series(tmp_path / "series")
    assert [to_display.file_slice(to_display.display_slice(n)) for n in numbers] == numbers
    with pytest.raises(
        ValueError, match="no image of that InstanceNumber; it has images with InstanceNumbers 35 to 40"
    ):
        prompts_in_display_frame([Prompt(points=[[1, 1]], slice=3)], tmp_path / "series", "voxel")


def test_predict_takes_a_viewers_coordinates_on_a_dicom_series(tiny_base, tmp_path, capsys):
    from msa_hf.testing import write_dicom_series

    volume = np.full((6, 20, 24), -1000.0, np.float32)
    volume[1:5, 4:12, 3:11] = 300.0  # a block on the left of the stored images: the patient's right
    write_dicom_series(tmp_path / "series", volume, instance_numbers=[6 - k for k in range(6)])
    common = ["--device", "cpu"]
    assert main(["predict", str(tiny_base), str(tmp_path / "series"), str(tmp_path / "voxel.nii.gz"), "--prompt-frame",
                 "voxel", "--box", "3", "4", "10", "11", "--slice", "3", *common]) == 0  # fmt: skip
    assert "label 1 slice 3:" in capsys.readouterr().out  # the image number it was asked on
    (display,) = prompts_in_display_frame([Prompt(box=[3, 4, 10, 11], slice=3)], tmp_path / "series", "voxel")
    assert display.box[0] > 12  # the viewer's left half is the display's right half (neurological)
    assert main(["predict", str(tiny_base), str(tmp_path / "series"), str(tmp_path / "display.nii.gz"),
                 "--box", *(str(v) for v in display.box), "--slice", str(display.slice), *common]) == 0  # fmt: skip
    voxel_mask = load_volume(tmp_path / "voxel.nii.gz", is_label=True).array
    assert voxel_mask.any() and np.array_equal(
        voxel_mask, load_volume(tmp_path / "display.nii.gz", is_label=True).array
    )


def test_a_viewers_frame_number_and_pixel_on_an_enhanced_file(tmp_path):
    """`--prompt-frame voxel` on an enhanced multi-frame file: column i, row j of frame k (counted from 1, in the
    file's own frame order) land on that pixel of that frame."""
    highdicom = pytest.importorskip("highdicom")
    import pydicom

    from msa_hf.data.volumes import dicom_series_slices
    from msa_hf.testing import write_dicom_series

    volume = np.zeros((6, 12, 16), np.float32)
    volume[1, 3, 7], volume[4, 9, 2] = 100.0, 200.0  # (slice, row, column)
    write_dicom_series(tmp_path / "series", volume)
    found, _ = dicom_series_slices(tmp_path / "series")
    path = tmp_path / "CT.dcm"
    highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[dataset for _, dataset in found], series_instance_uid=highdicom.UID(), series_number=3,
        sop_instance_uid=highdicom.UID(), instance_number=1,
    ).save_as(path)  # fmt: skip
    frames = pydicom.dcmread(path).pixel_array.astype(np.float32) - 1024  # (frames, rows, columns), in HU
    slices = axial_slices(load_volume(path).array)
    for value in (100.0, 200.0):
        frame, row, column = np.argwhere(frames == value)[0]
        (prompt,) = prompts_in_display_frame(
            [Prompt(points=[[column, row]], slice=int(frame) + 1)], path, "voxel"
        )
        (x, y) = prompt.points[0]
        assert slices[prompt.slice, int(y), int(x)] == value
    with pytest.raises(
        ValueError, match="no image of that frame number; it has images with frame numbers 1 to 6"
    ):
        prompts_in_display_frame([Prompt(points=[[1, 1]], slice=7)], path, "voxel")
