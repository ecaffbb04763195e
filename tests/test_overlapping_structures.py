# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Structures that overlap (a tumour inside its organ): a label map keeps one value per pixel and says so; a
DICOM-SEG or RT structure set keeps each structure whole, and is read back, scored and prompted from so. A
stand-in model whose masks are the prompt boxes filled gives masks known in advance."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import BoxFillSam, overlapping_prompts

pytest.importorskip("highdicom")

LIVER, TUMOUR = overlapping_prompts()  # a liver, and a tumour inside it and out past its edge


@pytest.fixture
def series(block_series):
    return block_series


def _alone(series, tmp_path, prompts, name):
    """A structure predicted on its own: the RAS+ mask a whole structure is."""
    from msa_hf.data.volumes import load_volume

    predict_file(BoxFillSam(32), series, tmp_path / f"{name}.nii.gz", prompts)
    return load_volume(tmp_path / f"{name}.nii.gz", is_label=True).array > 0


def test_a_label_map_keeps_the_later_prompt_where_masks_overlap_and_says_so(series, tmp_path):
    from msa_hf.data.volumes import load_volume

    liver, tumour = _alone(series, tmp_path, LIVER, "liver"), _alone(series, tmp_path, TUMOUR, "tumour")
    both = liver & tumour
    assert both.any() and (tumour & ~liver).any()  # overlapping, and not nested: neither a subset
    summary = predict_file(BoxFillSam(32), series, tmp_path / "mask.nii.gz", LIVER + TUMOUR)
    labels = load_volume(tmp_path / "mask.nii.gz", is_label=True).array
    assert np.array_equal(labels == 2, tumour) and np.array_equal(labels == 1, liver & ~tumour)
    (note,) = summary["warnings"]
    assert f"prompt 2's mask (label 2) covers pixels of earlier masks ({int(both.sum())} of label 1)" in note
    assert "DICOM-SEG or an RT structure set (.dcm) keep each structure whole" in note
    # two prompts of one structure overlapping (slices 2 and 3 do not; these two do) are no conflict
    summary = predict_file(
        BoxFillSam(32),
        series,
        tmp_path / "two.nii.gz",
        [LIVER[0], Prompt(box=[1, 1, 5, 5], slice=2, value=1)],
    )
    assert "warnings" not in summary
    # a 2-D picture says it too
    from PIL import Image

    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp_path / "picture.png")
    prompts = [Prompt(box=[2, 2, 12, 12]), Prompt(box=[8, 8, 16, 16])]
    summary = predict_file(BoxFillSam(32), tmp_path / "picture.png", tmp_path / "picture_mask.png", prompts)
    assert "label map keeps one value per pixel" in summary["warnings"][0]
    assert "--save-probabilities" in summary["warnings"][0]


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_dicom_outputs_keep_each_structure_whole(series, tmp_path, kind):
    """Written with both prompts, each segment or ROI is the mask its structure gets alone; read back, each
    structure is its own mask again, and the same file read as one label map is refused naming the two."""
    from msa_hf.data.dicom_seg_labels import (
        OverlappingStructuresError,
        load_dicom_labels,
        load_dicom_structures,
    )

    liver, tumour = _alone(series, tmp_path, LIVER, "liver"), _alone(series, tmp_path, TUMOUR, "tumour")
    summary = predict_file(BoxFillSam(32), series, tmp_path / "mask.dcm", LIVER + TUMOUR, dicom_output=kind)
    assert "warnings" not in summary  # nothing was lost
    volume, codes = load_dicom_structures(tmp_path / "mask.dcm", series, {"liver": 1, "tumour": 2})
    assert codes == {1: (1, 3), 2: (2, 3)}  # liver alone, tumour alone, both
    assert np.array_equal(np.isin(volume.array, codes[1]), liver)
    assert np.array_equal(np.isin(volume.array, codes[2]), tumour)
    with pytest.raises(OverlappingStructuresError, match="overlap"):
        load_dicom_labels(tmp_path / "mask.dcm", series, {"liver": 1, "tumour": 2})
    # a structure set or segmentation without overlaps is still one label map
    predict_file(
        BoxFillSam(32),
        series,
        tmp_path / "apart.dcm",
        [dataclasses.replace(LIVER[1], name="liver"), *TUMOUR],
        dicom_output=kind,
    )
    apart, none = load_dicom_structures(tmp_path / "apart.dcm", series, {"liver": 1, "tumour": 2})
    assert none is None and set(np.unique(apart.array).tolist()) == {0, 1, 2}


def test_a_dicom_seg_of_overlapping_segments_as_highdicom_reads_it(series, tmp_path):
    """Independently of our reader: the segmentation's frames, read by highdicom per source instance, hold each
    segment whole (a pixel may be in both)."""
    import highdicom

    from msa_hf.data.volumes import dicom_series_slices, load_volume
    from msa_hf.inference.dicom_seg import labels_on_series_grid

    liver, tumour = _alone(series, tmp_path, LIVER, "liver"), _alone(series, tmp_path, TUMOUR, "tumour")
    predict_file(BoxFillSam(32), series, tmp_path / "mask.dcm", LIVER + TUMOUR)
    segmentation = highdicom.seg.segread(tmp_path / "mask.dcm")
    assert [s.SegmentLabel for s in segmentation.SegmentSequence] == ["liver", "tumour"]
    found, _ = dicom_series_slices(series)
    frames = segmentation.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(dataset.SOPInstanceUID) for _, dataset in found],
        segment_numbers=[1, 2], skip_overlap_checks=True, ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
    )  # fmt: skip
    affine = load_volume(series).affine
    for number, whole in ((1, liver), (2, tumour)):
        expected = labels_on_series_grid(series, whole.astype(np.uint8), affine) == 1
        assert np.array_equal(frames[..., number - 1].astype(bool), expected), number
    assert (frames.sum(axis=-1) == 2).any()


def _seg_scored_against_rtstruct(series, tmp_path) -> list[str]:
    """The liver and the tumour written as a DICOM-SEG in `pred/` and an RT structure set in `ref/` (with its
    label table): the argv that scores the one against the other."""
    for folder, kind in (("pred", "seg"), ("ref", "rtstruct")):
        predict_file(
            BoxFillSam(32), series, tmp_path / folder / "case.dcm", LIVER + TUMOUR, dicom_output=kind
        )
    (tmp_path / "ref" / "labels.json").write_text(json.dumps({"1": "liver", "2": "tumour"}))
    return ["score", str(tmp_path / "pred"), str(tmp_path / "ref"), "--images", str(series)]


def test_overlapping_structures_are_scored_and_prompted_each_whole(series, tmp_path, capsys):
    """`score` reads each structure of a DICOM object whole: a SEG against an RT structure set of the same
    prompts scores 1 for both; against the label map of those prompts, the liver's Dice is what its missing
    overlap costs, computed here. Prompts from an RT structure set's labels are each structure's own boxes."""
    from msa_hf.cli import main
    from msa_hf.data.planes import display_slices
    from msa_hf.inference.batch import prompts_from_label_map
    from msa_hf.processing.prompts import box_from_mask

    liver, tumour = _alone(series, tmp_path, LIVER, "liver"), _alone(series, tmp_path, TUMOUR, "tumour")
    argv = _seg_scored_against_rtstruct(series, tmp_path)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| liver | 1 | 1.000" in printed and "| tumour | 1 | 1.000" in printed

    predict_file(BoxFillSam(32), series, tmp_path / "flat" / "case.nii.gz", LIVER + TUMOUR)
    (tmp_path / "flat" / "labels.json").write_text(json.dumps({"1": "liver", "2": "tumour"}))
    (tmp_path / "ref" / "case.dcm").unlink()
    assert main(["score", str(tmp_path / "pred"), str(tmp_path / "flat"), "--images", str(series)]) == 0
    printed = capsys.readouterr().out
    kept = liver & ~tumour
    assert f"| liver | 1 | {2 * kept.sum() / (liver.sum() + kept.sum()):.3f}" in printed
    assert "| tumour | 1 | 1.000" in printed

    predict_file(BoxFillSam(32), series, tmp_path / "rs.dcm", LIVER + TUMOUR, dicom_output="rtstruct")
    prompts = prompts_from_label_map(
        tmp_path / "rs.dcm", "box", volume=True, image_path=series, plane="axial"
    )
    expected = []
    for value, whole in ((1, liver), (2, tumour)):
        for index, shown in enumerate(display_slices(whole, "axial")):
            if shown.any():
                expected.append((value, index, [float(v) for v in box_from_mask(shown)]))
    assert [(p.value, p.slice, p.box) for p in prompts] == expected


@pytest.mark.parametrize("volumes", [1, 2])
def test_an_enhanced_files_dicom_seg_keeps_overlapping_segments_whole(tmp_path, volumes):
    """An enhanced multi-frame file as the input (its own frames, or the second of two acquisitions it holds):
    the segmentation's overlapping segments land on that volume's frames, each whole."""
    from msa_hf.data.dicom_seg_labels import load_dicom_structures
    from msa_hf.data.volumes import load_volume
    from msa_hf.testing import write_enhanced_acquisitions

    rng = np.random.default_rng(5)
    enhanced = write_enhanced_acquisitions(
        tmp_path, [rng.integers(-100, 100, (6, 20, 24)).astype(np.float32) for _ in range(volumes)]
    )
    series = "4/FrameAcquisitionNumber=2" if volumes == 2 else None
    wholes = []
    for name, prompts in (("liver", LIVER), ("tumour", TUMOUR)):
        predict_file(BoxFillSam(32), enhanced, tmp_path / f"{name}.nii.gz", prompts, series=series)
        wholes.append(load_volume(tmp_path / f"{name}.nii.gz", is_label=True).array > 0)
    predict_file(BoxFillSam(32), enhanced, tmp_path / "mask.dcm", LIVER + TUMOUR, series=series)
    volume, codes = load_dicom_structures(tmp_path / "mask.dcm", enhanced, {"liver": 1, "tumour": 2}, series)
    assert codes == {1: (1, 3), 2: (2, 3)}
    for value, whole in enumerate(wholes, start=1):
        assert np.array_equal(np.isin(volume.array, codes[value]), whole), value


def test_segment_pixels_are_numbers_where_segments_are_apart_and_channels_where_they_overlap():
    """A label map's values become segment numbers by lookup (values 3 and 7: segments 1 and 2); the same
    structures given as masks that do not overlap give the same numbers; overlapping masks one channel each."""
    from msa_hf.data.dicom_planes import GridStructures
    from msa_hf.inference.dicom_seg import segment_pixels

    labels = np.zeros((2, 4, 5), np.uint8)
    labels[0, :2, :2], labels[1, 2:, 3:] = 3, 7
    numbers = np.where(labels == 3, 1, np.where(labels == 7, 2, 0))
    from_map = segment_pixels(GridStructures((3, 7), labels=labels))
    assert from_map.dtype == np.uint8 and np.array_equal(from_map, numbers)
    apart = GridStructures((3, 7), masks={3: labels == 3, 7: labels == 7})
    assert np.array_equal(segment_pixels(apart), numbers)
    assert np.array_equal(GridStructures((3, 7), labels=labels).mask(7), labels == 7)
    around = np.zeros_like(labels, bool)
    around[0, :3, :3] = True  # holds all of structure 3
    channels = segment_pixels(GridStructures((3, 9), masks={3: labels == 3, 9: around}))
    assert channels.shape == (2, 4, 5, 2)
    assert np.array_equal(channels[..., 0], labels == 3) and np.array_equal(channels[..., 1], around)


def test_painted_labels_keep_a_mask_only_for_what_was_painted_over():
    """Prompts painted later over earlier: with nothing covered the label map itself is what a DICOM output is
    written from (no mask per structure); once a structure is covered, each comes back whole, from the map and
    the pixels it lost, whether painted on the whole volume or on one slice."""
    from msa_hf.inference.predictor import PaintedLabels

    painted = PaintedLabels((3, 6, 6), np.uint8, keep_whole=True)
    liver, lesion, spleen = (np.zeros((3, 6, 6), bool) for _ in range(3))
    liver[:, 1:5, 1:5], spleen[:, 5:, 5:] = True, True
    assert painted.paint(liver, 1) == {} and painted.paint(spleen, 2) == {}
    assert painted.structures() is painted.labels
    lesion[1, 2:4, 3:6] = True  # inside the liver, and out past it
    assert painted.paint(lesion[1], 3, index=1) == {1: 4}
    whole = painted.structures()
    assert list(whole) == [1, 2, 3] and set(painted._lost) == {1}  # only the liver lost pixels
    for value, mask in ((1, liver), (2, spleen), (3, lesion)):
        assert np.array_equal(whole[value], mask), value
    assert np.array_equal(painted.labels == 1, liver & ~lesion)  # the map: the later prompt's value
    flat = PaintedLabels((3, 6, 6), np.uint8)  # a label map output remembers nothing
    flat.paint(liver, 1)
    assert flat.paint(lesion, 3) == {1: 4} and flat.structures() is flat.labels


def test_remapped_label_values_apply_to_overlapping_structures(series, tmp_path, capsys):
    """`--remap-labels` reads an overlapping reference's values as it reads a label map's: swapped, the
    liver's prediction is scored against the tumour's structure (their Dice, computed here); remapped to 0,
    a structure drops out; prompts carry the value it is read as."""
    from msa_hf.cli import main
    from msa_hf.inference.batch import prompts_from_label_map

    liver, tumour = _alone(series, tmp_path, LIVER, "liver"), _alone(series, tmp_path, TUMOUR, "tumour")
    argv = _seg_scored_against_rtstruct(series, tmp_path)
    assert main([*argv, "--remap-labels", "1=2", "2=1"]) == 0
    swapped = f"{2 * (liver & tumour).sum() / (liver.sum() + tumour.sum()):.3f}"
    printed = capsys.readouterr().out
    assert f"| liver | 1 | {swapped}" in printed and f"| tumour | 1 | {swapped}" in printed

    reference = tmp_path / "ref" / "case.dcm"
    kinds = {"volume": True, "image_path": series, "plane": "axial"}
    as_read = prompts_from_label_map(reference, "box", **kinds)
    renumbered = prompts_from_label_map(reference, "box", label_remap={2: 5}, **kinds)
    assert [p.value for p in renumbered] == [5 if p.value == 2 else p.value for p in as_read]
    assert [p.box for p in renumbered] == [p.box for p in as_read]
    dropped = prompts_from_label_map(reference, "box", label_remap={2: 0}, **kinds)
    assert [(p.value, p.box) for p in dropped] == [(p.value, p.box) for p in as_read if p.value == 1]


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_overlapping_structures_are_read_from_one_reading_of_the_series(series, tmp_path, monkeypatch, kind):
    """Structures that overlap come back as bits, each whole, from one reading of the series (and of an RT
    structure set's file): they were read twice, as a label map, refused, then as bits. Apart, they come back
    as a label map."""
    import pydicom

    import msa_hf.data.dicom_stacks as dicom_stacks
    from msa_hf.data.dicom_seg_labels import load_dicom_structures

    liver, tumour = _alone(series, tmp_path, LIVER, "liver"), _alone(series, tmp_path, TUMOUR, "tumour")
    predict_file(BoxFillSam(32), series, tmp_path / "both.dcm", LIVER + TUMOUR, dicom_output=kind)
    reads = []
    read_stack, dcmread = dicom_stacks.read_stack, pydicom.dcmread

    def reading_stack(*args, **kwargs):
        reads.append("series")
        return read_stack(*args, **kwargs)

    def reading_file(path, *args, **kwargs):
        if "specific_tags" not in kwargs:  # a whole file, not the one tag that tells its kind
            reads.append(Path(path).name)
        return dcmread(path, *args, **kwargs)

    monkeypatch.setattr(dicom_stacks, "read_stack", reading_stack)
    monkeypatch.setattr(pydicom, "dcmread", reading_file)
    volume, codes = load_dicom_structures(tmp_path / "both.dcm", series, {"liver": 1, "tumour": 2})
    assert codes is not None and reads.count("series") == 1
    if kind == "rtstruct":  # a DICOM-SEG is opened by highdicom's own reader
        assert reads.count("both.dcm") == 1
    for value, whole in ((1, liver), (2, tumour)):
        assert np.array_equal(np.isin(volume.array, codes[value]), whole), value
    predict_file(BoxFillSam(32), series, tmp_path / "liver.dcm", LIVER, dicom_output=kind)
    volume, codes = load_dicom_structures(tmp_path / "liver.dcm", series, {"liver": 1})
    assert codes is None and np.array_equal(volume.array == 1, liver)


def test_predict_takes_a_zipped_series_as_its_folder(series, tmp_path, capsys, serve_stand_in):
    """`msa-hf predict MODEL export.zip OUT`: the zip's DICOM files (suffix-less, in folders, beside a README)
    are predicted as their folder is, the DICOM-SEG referencing the same instances; the temporary folder is
    gone afterwards, and a message names the zip, not it."""
    import zipfile

    import pydicom

    from msa_hf.cli import main

    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as archive:
        for index, file in enumerate(sorted(series.iterdir())):
            archive.write(file, f"PAT/SER/IM{index:04d}")
        archive.writestr("README.TXT", "exported")
    serve_stand_in(BoxFillSam(32))
    box = ["--slice", "2", "--box", "2", "2", "19", "15"]
    assert main(["predict", "m", str(export), str(tmp_path / "zipped.dcm"), *box]) == 0
    assert main(["predict", "m", str(series), str(tmp_path / "folder.dcm"), *box]) == 0
    capsys.readouterr()
    assert main(["predict", "m", str(export), str(tmp_path / "z.dcm"), *box, "--series", "7"]) == 2
    message = capsys.readouterr().err
    assert "export.zip" in message and "msa-zip-" not in message
    zipped, folder = (pydicom.dcmread(tmp_path / name) for name in ("zipped.dcm", "folder.dcm"))
    assert np.array_equal(zipped.pixel_array, folder.pixel_array)
    referenced = [
        [
            str(item.ReferencedSOPInstanceUID)
            for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        ]
        for seg in (zipped, folder)
    ]
    assert referenced[0] == referenced[1]
    assert not list(Path(tempfile.gettempdir()).glob("msa-zip-*"))
