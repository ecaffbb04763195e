"""Volumes cut into axial, coronal or sagittal slices: the conventions, the choice, and predict, batch prompts
and the demo on a scan acquired sagittally."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest

from msa_hf.data.planes import (
    choose_plane,
    display_slices,
    pixel_note,
    plane_spacing,
    volume_from_display_slices,
)
from msa_hf.data.volumes import axial_slices, load_volume
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.inference.volume_predictor import grown_box
from msa_hf.testing import BrightInBoxSam, write_nifti_case


def test_each_planes_slices_follow_its_convention_and_come_back():
    shape = (5, 6, 7)  # RAS+ (X: left -> right, Y: posterior -> anterior, Z: inferior -> superior)
    volume = np.arange(np.prod(shape)).reshape(shape)
    marker = (1, 4, 2)  # left of centre, anterior, low
    corner = volume[marker]
    axial = display_slices(volume, "axial")
    assert (
        axial.shape == (7, 6, 5) and axial[2, 6 - 1 - 4, 1] == corner
    )  # slice z, row from anterior, column x
    np.testing.assert_array_equal(axial, axial_slices(volume))
    coronal = display_slices(volume, "coronal")
    assert (
        coronal.shape == (6, 7, 5) and coronal[4, 7 - 1 - 2, 1] == corner
    )  # slice y, row from superior, col x
    sagittal = display_slices(volume, "sagittal")
    assert (
        sagittal.shape == (5, 7, 6) and sagittal[1, 7 - 1 - 2, 6 - 1 - 4] == corner
    )  # slice x, col from anterior
    for plane in ("axial", "coronal", "sagittal"):
        np.testing.assert_array_equal(
            volume_from_display_slices(display_slices(volume, plane), plane), volume
        )
    assert plane_spacing((4.0, 0.5, 0.6), "sagittal") == (0.6, 0.5, 4.0)  # rows head-feet, columns front-back
    assert plane_spacing((4.0, 0.5, 0.6), "coronal") == (0.6, 4.0, 0.5)
    with pytest.raises(ValueError, match="expected one of axial, coronal, sagittal"):
        display_slices(volume, "oblique")


def test_auto_keeps_axial_unless_its_pixels_are_far_from_square():
    assert choose_plane((0.7, 0.7, 3.0)) == "axial"  # thick axial CT slices: square pixels
    assert choose_plane((1.0, 1.0, 1.0)) == "axial"  # isotropic: axial first
    assert choose_plane((1.0, 1.9, 1.0)) == "axial"  # within twofold
    assert choose_plane((4.0, 0.5, 0.5)) == "sagittal"  # a sagittal knee: slices 4 mm apart left-right
    assert choose_plane((0.6, 5.0, 0.6)) == "coronal"
    assert choose_plane((4.0, 0.5, 5.0)) == "coronal"  # the squarest pixels: 4 x 5 mm
    assert choose_plane((4.0, 0.5, 0.5), "axial") == "axial"  # asked for
    with pytest.raises(ValueError, match="auto, axial, coronal, sagittal"):
        choose_plane((1, 1, 1), "transverse")


def test_pixels_far_from_square_are_said_with_the_fix():
    note = pixel_note((4.0, 0.5, 0.5), "axial", "knee.nii.gz")
    assert note.startswith(
        "knee.nii.gz: its axial slices have pixels 4 x 0.5 mm (left-right x front-back), 8.0x"
    )
    assert "thinner left-right" in note and "--plane auto" in note and "--target-spacing" in note
    assert "thinner front-back" in pixel_note((0.5, 1.5, 3.0), "axial", "x")  # 3x
    assert pixel_note((4.0, 0.5, 0.5), "sagittal", "knee") is None  # cut in its own plane: square
    assert pixel_note((0.7, 0.7, 3.0), "axial", "ct") is None


SAGITTAL = np.diag([4.0, 0.5, 0.5, 1.0])  # 4 mm apart left-right, 0.5 mm pixels within a sagittal slice


def _sagittal_block(tmp_path):
    """A RAS NIfTI acquired sagittally (12 slices of 40 x 40) with a bright block on sagittal slices 3-8."""
    data = np.full((12, 40, 40), 100.0, np.float32)
    block = np.zeros(data.shape, bool)
    block[3:9, 10:30, 12:26] = True
    data[block] = 900.0
    path = tmp_path / "knee.nii.gz"
    nib.save(nib.Nifti1Image(data, SAGITTAL), path)
    return path, block


def test_predict_cuts_a_sagittal_scan_in_its_own_plane(tmp_path, caplog):
    path, block = _sagittal_block(tmp_path)
    shown = display_slices(block, "sagittal")
    box = grown_box(shown[5], 0.0)
    with caplog.at_level(logging.WARNING):
        summary = predict_file(
            BrightInBoxSam(40), path, tmp_path / "m.nii.gz", [Prompt(box=box, slice=5, propagate=True)]
        )
    assert summary["plane"] == "sagittal" and "warnings" not in summary and not caplog.text
    written = np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj) == 1
    np.testing.assert_array_equal(written, block)  # the block, propagated through its six sagittal slices
    assert summary["masks"][0]["slices"] == [3, 8]
    assert summary["masks"][0]["volume_ml"] == round(block.sum() * 4.0 * 0.25 / 1000, 4)
    # asked for axial slices, the same scan is segmented there (the box on an axial slice), and said to be squashed
    axial = display_slices(block, "axial")
    with caplog.at_level(logging.WARNING):
        forced = predict_file(
            BrightInBoxSam(40), path, tmp_path / "a.nii.gz",
            [Prompt(box=grown_box(axial[20], 0.0), slice=20)], plane="axial",
        )  # fmt: skip
    assert forced["plane"] == "axial" and forced["warnings"] == [pixel_note((4.0, 0.5, 0.5), "axial", path)]
    assert forced["warnings"][0] in caplog.text
    written = np.asarray(nib.load(tmp_path / "a.nii.gz").dataobj) == 1
    expected = np.zeros_like(block)
    expected[:, :, 20] = block[:, :, 20]
    np.testing.assert_array_equal(written, expected)


def test_voxel_prompts_and_the_command_line_on_a_sagittal_scan(tiny_base, tmp_path, capsys):
    from msa_hf.cli import main

    _, block = _sagittal_block(tmp_path)
    # stored as a scanner writes a sagittal series: voxel (i, j, k) is y (front-back), z (head-feet), x (slice)
    path = tmp_path / "stored.nii.gz"
    data = np.transpose(np.where(block, 900.0, 100.0).astype(np.float32), (1, 2, 0))
    nib.save(
        nib.Nifti1Image(data, np.array([[0, 0, 4.0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 1]])), path
    )
    args = ["predict", str(tiny_base), str(path), str(tmp_path / "v.nii.gz"), "--prompt-frame", "voxel",
            "--slice", "5", "--box", "10", "12", "29", "25", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "sagittal slices (the plane the scan was acquired in" in printed and "label 1 slice 5:" in printed
    written = np.asarray(nib.load(tmp_path / "v.nii.gz").dataobj)  # on the file's own grid
    assert written.shape == data.shape and written[..., 5].any()
    assert not written[..., [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]].any()  # only the prompted sagittal slice
    # the same mask as the same box given in the display frame of the sagittal slices
    from msa_hf.inference.prompt_frames import prompts_in_display_frame

    (shown,) = prompts_in_display_frame([Prompt(box=[10, 12, 29, 25], slice=5)], path, "voxel")
    display = ["--slice", str(shown.slice), "--box", *(str(v) for v in shown.box)]
    assert main([*args[:4], "--plane", "sagittal", *display, "--device", "cpu", "--overwrite"]) == 0
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "v.nii.gz").dataobj), written)
    assert main([*args[:4], "--prompt-frame", "voxel", "--plane", "axial", "--slice", "5", "--box", "1", "1",
                 "5", "5", "--overwrite"]) == 2  # fmt: skip
    assert "so its slices are sagittal, not axial" in capsys.readouterr().err


def test_batch_prompts_from_a_sagittal_label_map_are_its_sagittal_slices(tmp_path):
    from msa_hf.inference.batch import prompts_from_label_map

    path, block = _sagittal_block(tmp_path)
    labels = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(block.astype(np.uint8), SAGITTAL), labels)
    prompts = prompts_from_label_map(labels, "box", volume=True)
    assert [p.slice for p in prompts] == [3, 4, 5, 6, 7, 8]  # the block's sagittal slices
    predict_file(BrightInBoxSam(40), path, tmp_path / "m.nii.gz", prompts)
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj) == 1, block)
    axial = prompts_from_label_map(labels, "box", volume=True, plane="axial")
    assert len(axial) == 14  # the block's axial slices


def test_the_demo_shows_a_sagittal_scan_in_its_own_plane(tmp_path):
    from msa_hf.demo.prompt_state import BOX, add_prompt, empty_prompts
    from msa_hf.demo.sessions import DemoSession, VolumeSession

    path, block = _sagittal_block(tmp_path)
    volume = VolumeSession(str(path), DemoSession(BrightInBoxSam(40)))
    assert volume.plane == "sagittal" and volume.slices.shape == (12, 40, 40) and volume.sliced.notes == []
    x0, y0, x1, y1 = grown_box(display_slices(block, "sagittal")[5], 0.0)
    corner = add_prompt(empty_prompts(), x0, y0, BOX, volume.slices.shape[1:])
    volume.set_prompts(5, add_prompt(corner, x1, y1, BOX, volume.slices.shape[1:]))
    assert "to slices 3-8" in volume.propagate(5)
    saved = load_volume(volume.save(str(tmp_path)), is_label=True)
    np.testing.assert_array_equal(saved.array == 1, block)  # back on the input's grid
    # the visitor may ask for another plane: the same voxels, cut coronally
    coronal = VolumeSession(str(path), DemoSession(BrightInBoxSam(40)), plane="coronal")
    (note,) = coronal.sliced.notes
    assert coronal.plane == "coronal" and note.startswith("the volume: its coronal slices")
    np.testing.assert_array_equal(coronal.slices, display_slices(load_volume(path).array, "coronal"))


def test_prepare_cuts_a_sagittal_case_in_its_own_plane_as_predict_does(tmp_path):
    from msa_hf.data import load_prepared, prepare_dataset

    for index in range(2):
        write_nifti_case(
            tmp_path / "src", f"c{index}", shape=(12, 40, 40), seed=index, hu=False, affine=SAGITTAL
        )
    report = prepare_dataset(tmp_path / "src", tmp_path / "prepared", split=(0.5, 0.5, 0.0))
    assert report.planes == {"c0": "sagittal", "c1": "sagittal"} and not any(
        "slices have pixels" in w for w in report.warnings
    )
    assert "Volumes cut into slices of each plane (cases): sagittal 2." in report.summary()
    rows = load_prepared(tmp_path / "prepared")["train"]
    case = rows[0]["case_id"]
    label = load_volume(tmp_path / "src" / "labelsTr" / f"{case}.nii.gz", is_label=True)
    sagittal = display_slices(label.array, "sagittal")
    first = np.flatnonzero(sagittal.any(axis=(1, 2)))[0]  # rows run from the first labelled slice
    for row in rows:
        assert tuple(row["spacing"]) == (0.5, 0.5, 4.0)  # (row, column, slice) of a sagittal slice
        if row["case_id"] == case:
            assert np.array_equal(np.asarray(row["label"]), sagittal[first + row["slice"]])
    # asked for axial rows, the same cases are cut axially, and said to be squashed
    axial = prepare_dataset(tmp_path / "src", tmp_path / "axial", split=(0.5, 0.5, 0.0), plane="axial")
    assert axial.planes == {"c0": "axial", "c1": "axial"}
    assert sum("its axial slices have pixels 4 x 0.5 mm" in w for w in axial.warnings) == 2
    with pytest.raises(ValueError, match="auto, axial, coronal, sagittal"):
        prepare_dataset(tmp_path / "src", tmp_path / "bad", plane="oblique")


def test_a_sagittal_dicom_series_is_segmented_on_the_image_a_viewer_numbers(tmp_path, capsys):
    """A sagittal series as a PACS exports it: voxel prompts name image 5's columns and rows, and the mask is
    the bright block on that image, and nothing else."""
    from msa_hf.cli import main
    from msa_hf.inference.prompt_frames import voxel_frame
    from msa_hf.testing import write_dicom_series

    volume = np.full((10, 40, 40), -500, np.int16)  # (images, rows, columns)
    volume[3:7, 10:30, 12:26] = 400  # on images numbered 4 to 7
    folder = tmp_path / "series"
    # rows run posterior (LPS +y), columns inferior (-z): a sagittal plane; images step along its normal, x
    write_dicom_series(folder, volume, spacing=(0.5, 0.5), thickness=4.0, orientation=(0, 1, 0, 0, 0, -1))
    frame = voxel_frame(folder, "voxel")
    assert frame.plane == "sagittal"
    prompt = frame.prompt(Prompt(box=[12, 10, 25, 29], slice=5))  # image 5's columns 12-25, rows 10-29
    summary = predict_file(BrightInBoxSam(40), folder, tmp_path / "m.nii.gz", [prompt], plane=frame.plane)
    assert summary["plane"] == "sagittal" and frame.file_slice(summary["masks"][0]["slice"]) == 5
    bright = load_volume(folder).array > 0  # RAS+, as the mask is written for a DICOM series
    written = np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj) == 1
    (slab,) = np.flatnonzero(written.any(axis=(1, 2)))  # one sagittal image: one RAS x
    expected = np.zeros_like(bright)
    expected[slab] = bright[slab]
    np.testing.assert_array_equal(written, expected)
    assert written.sum() == 20 * 14  # the block's rows x columns on one image
    # as a DICOM-SEG on the series' own images, it reads back as the same mask
    from msa_hf.data.dicom_seg_labels import load_label_volume

    predict_file(BrightInBoxSam(40), folder, tmp_path / "m.dcm", [prompt], plane=frame.plane)
    np.testing.assert_array_equal(load_label_volume(tmp_path / "m.dcm", folder).array == 1, written)
    # the command line numbers it as the viewer does
    args = ["predict", "tiny", str(folder), str(tmp_path / "cli.nii.gz"), "--prompt-frame", "voxel",
            "--slice", "5", "--box", "12", "10", "25", "29", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "sagittal slices" in printed and "label 1 slice 5:" in printed
    cli = np.asarray(nib.load(tmp_path / "cli.nii.gz").dataobj) != 0
    assert set(np.flatnonzero(cli.any(axis=(1, 2)))) == {slab}  # something, on that image alone


def test_a_model_records_its_training_planes_and_predict_says_when_it_cuts_another(tmp_path, caplog):
    from msa_hf.data.planes import unseen_plane_note
    from msa_hf.demo.sessions import DemoSession, VolumeSession
    from msa_hf.processing.processor import MsaProcessor
    from msa_hf.training.config import TrainConfig
    from msa_hf.training.datasets import training_planes

    assert unseen_plane_note("sagittal", ("axial",), "knee").startswith(
        "knee: cut into sagittal slices, but the model was adapted on axial slices only"
    )
    assert unseen_plane_note("axial", ("axial", "sagittal"), "x") is None
    assert unseen_plane_note("sagittal", None, "x") is None  # planes unknown: nothing to say
    MsaProcessor(64, 32, planes=["sagittal", "axial", "axial"]).save_pretrained(tmp_path / "model")
    assert MsaProcessor.from_pretrained(tmp_path / "model").planes == ("axial", "sagittal")
    with pytest.raises(ValueError, match="oblique"):
        MsaProcessor(64, 32, planes=("oblique",))
    # a dataset's planes, from its report; one prepared before planes were recorded has none
    for index in range(2):
        write_nifti_case(
            tmp_path / "src", f"c{index}", shape=(12, 40, 40), seed=index, hu=False, affine=SAGITTAL
        )
    from msa_hf.data import prepare_dataset

    prepare_dataset(tmp_path / "src", tmp_path / "prepared", split=(0.5, 0.5, 0.0))
    assert training_planes(TrainConfig(dataset=str(tmp_path / "prepared"))) == ("sagittal",)
    assert training_planes(TrainConfig(dataset=str(tmp_path / "nowhere"))) is None
    # predict and the demo say so where a volume is cut in a plane the model never saw
    path, _ = _sagittal_block(tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = predict_file(
            BrightInBoxSam(40), path, tmp_path / "m.nii.gz", [Prompt(box=[5, 5, 30, 30], slice=5)],
            trained_planes=("axial",),
        )  # fmt: skip
    assert summary["warnings"] == [unseen_plane_note("sagittal", ("axial",), path)]
    assert summary["warnings"][0] in caplog.text
    seen = predict_file(
        BrightInBoxSam(40), path, tmp_path / "n.nii.gz", [Prompt(box=[5, 5, 30, 30], slice=5)],
        trained_planes=("sagittal",),
    )  # fmt: skip
    assert "warnings" not in seen
    volume = VolumeSession(str(path), DemoSession(BrightInBoxSam(40), trained_planes=("axial",)))
    assert volume.sliced.notes == [unseen_plane_note("sagittal", ("axial",), "the volume")]
