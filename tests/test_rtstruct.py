# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""RT Structure Sets: a mask as the contours a planning system imports, and such contours read as label maps.
The contours are checked against the source's own headers (each point solved into that image's pixels), and
read back to the very mask they were traced from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msa_hf.processing.contours import fill_contours, fill_nested_contours, keyhole_contours, mask_contours

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def test_contours_traced_along_pixel_edges_fill_back_to_the_mask():
    """Random masks (holes, pixels touching at a corner, the grid's edges) come back exactly; a square with a
    hole is its outline clockwise as shown and the hole's the other way round, at the pixels' corners."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(1, 18, 2))
        mask = rng.random(shape) > rng.random()
        contours = mask_contours(mask)
        assert np.array_equal(fill_contours(contours, shape), mask) if contours else not mask.any()
    ring = np.zeros((5, 5), bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False
    outline, hole = mask_contours(ring)
    assert outline.tolist() == [[0.5, 0.5], [3.5, 0.5], [3.5, 3.5], [0.5, 3.5]]  # (column, row): clockwise
    assert hole.tolist() == [[1.5, 2.5], [2.5, 2.5], [2.5, 1.5], [1.5, 1.5]]  # anticlockwise
    diagonal = np.eye(2, dtype=bool)  # two pixels meeting at one corner: two contours sharing it
    assert [c.tolist() for c in mask_contours(diagonal)] == [
        [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]],
        [[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [0.5, 1.5]],
    ]


def _winding_fill(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixel centres of `shape` a polygon encloses by the non-zero winding rule, a reader's other way."""
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    winding = np.zeros(shape, int)
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        side = (x1 - x0) * (rows - y0) - (columns - x0) * (y1 - y0)
        winding += ((y0 <= rows) & (y1 > rows) & (side > 0)).astype(int)
        winding -= ((y0 > rows) & (y1 <= rows) & (side < 0)).astype(int)
    return winding != 0


def test_keyholed_contours_fill_back_to_the_mask_however_a_reader_fills_them():
    """Holes joined to their boundaries by zero-width cuts: random masks (holes, islands in holes, pixels
    touching at a corner) come back from the contours taken together by the even-odd rule, and from each
    polygon filled on its own and united, by the even-odd and by the non-zero winding rule; a square with a
    hole is one polygon, cut from the hole's top-left corner straight up to the outline."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(1, 18, 2))
        mask = rng.random(shape) > rng.random()
        polygons = keyhole_contours(mask_contours(mask))
        if not polygons:
            assert not mask.any()
            continue
        assert np.array_equal(fill_contours(polygons, shape), mask)
        assert np.array_equal(np.logical_or.reduce([fill_contours([p], shape) for p in polygons]), mask)
        assert np.array_equal(np.logical_or.reduce([_winding_fill(p, shape) for p in polygons]), mask)
        for polygon in polygons:  # no vertex twice in a row, the last and the first included
            assert not np.all(polygon == np.roll(polygon, -1, axis=0), axis=1).any()
    ring = np.zeros((5, 5), bool)
    ring[1:4, 1:4] = True
    ring[2, 2] = False
    (polygon,) = keyhole_contours(mask_contours(ring))
    assert polygon.tolist() == [
        [0.5, 0.5], [1.5, 0.5],  # along the outline to above the hole's top-left corner, down the cut
        [1.5, 1.5], [1.5, 2.5], [2.5, 2.5], [2.5, 1.5], [1.5, 1.5],  # round the hole, back to its corner
        [1.5, 0.5], [3.5, 0.5], [3.5, 3.5], [0.5, 3.5],  # up the cut, on along the outline
    ]  # fmt: skip


def _square(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """A contour round the pixels of rows `top:bottom`, columns `left:right` (along their edges)."""
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.float64) - 0.5


def test_a_structures_contours_fill_by_nesting():
    """Nested contours are holes and an island in a hole is filled again; two strokes over each other are one
    region (the even-odd rule alone cuts out where they cross); two copies of a contour are that contour; and
    traced masks, keyholed or not, come back exactly."""
    shape = (16, 16)
    ring = fill_nested_contours([_square(1, 1, 15, 15), _square(4, 4, 12, 12), _square(6, 6, 10, 10)], shape)
    expected = np.zeros(shape, bool)
    expected[1:15, 1:15] = True
    expected[4:12, 4:12] = False
    expected[6:10, 6:10] = True
    assert np.array_equal(ring, expected)
    strokes = [_square(2, 2, 8, 8), _square(5, 5, 11, 11)]
    united = np.zeros(shape, bool)
    united[2:8, 2:8] = united[5:11, 5:11] = True
    assert np.array_equal(fill_nested_contours(strokes, shape), united)
    assert int(fill_contours(strokes, shape).sum()) == int(united.sum()) - 9  # even-odd: the crossing cut out
    assert np.array_equal(
        fill_nested_contours([strokes[0], strokes[0]], shape), fill_contours([strokes[0]], shape)
    )
    rng = np.random.default_rng(2)
    for _ in range(100):
        mask = rng.random((14, 15)) > rng.random()
        for contours in (mask_contours(mask), keyhole_contours(mask_contours(mask))):
            assert (
                np.array_equal(fill_nested_contours(contours, mask.shape), mask)
                if contours
                else not mask.any()
            )


def _solved(point: np.ndarray, dataset) -> tuple[float, float, float]:
    """A contour point (LPS mm) in the pixels of the image `dataset` it references, from that image's own
    headers: (column, row, distance from its plane)."""
    position = np.array(dataset.ImagePositionPatient, float)
    x, y = (
        np.array(dataset.ImageOrientationPatient[:3], float),
        np.array(dataset.ImageOrientationPatient[3:], float),
    )
    rows_mm, columns_mm = (float(v) for v in dataset.PixelSpacing)
    offset = point - position
    return offset @ x / columns_mm, offset @ y / rows_mm, offset @ np.cross(x, y)


def test_predict_writes_an_rt_structure_set_whose_contours_enclose_the_mask(tiny_base, tmp_path, capsys):
    """`--dicom-output rtstruct`: one ROI per label value, named by the prompts; every contour lies on the
    image it references, its corners on that image's pixel corners, and filled (together by the even-odd
    rule, or each on its own and united) it is the NIfTI mask of the same prompts on that image; it files
    under the series' patient, study and frame of reference; read back (and scored) it is that mask."""
    from msa_hf.cli import main
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import dicom_series_slices, load_volume
    from msa_hf.inference.dicom_seg import labels_on_series_grid
    from msa_hf.inference.rtstruct import COPIED_OR_EMPTY, RT_STRUCTURE_SET_STORAGE
    from msa_hf.testing import write_dicom_series

    volume = np.full((6, 20, 24), -1000.0, np.float32)
    volume[1:4, 5:14, 6:16] = 300.0
    volume[2, 8:11, 9:12] = -1000.0  # a hole on one slice
    write_dicom_series(tmp_path / "series", volume)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([
        {"box": [5, 4, 17, 15], "slice": 2, "propagate": True, "name": "bright block", "value": 4},
        {"box": [1, 1, 8, 8], "slice": 4},
    ]))  # fmt: skip
    arguments = ["predict", str(tiny_base), str(tmp_path / "series"), str(tmp_path / "rs.dcm"),
                 "--prompts", str(prompts), "--device", "cpu", "--dicom-output", "rtstruct"]  # fmt: skip
    assert main(arguments) == 0
    assert main([*arguments[:3], str(tmp_path / "mask.nii.gz"), *arguments[4:-2]]) == 0  # the same as NIfTI
    capsys.readouterr()
    mask = load_volume(tmp_path / "mask.nii.gz", is_label=True)
    values = [int(v) for v in np.unique(mask.array) if v]
    found, _ = dicom_series_slices(tmp_path / "series")
    images = {str(dataset.SOPInstanceUID): (index, dataset) for index, (_, dataset) in enumerate(found)}
    on_instances = labels_on_series_grid(
        tmp_path / "series", mask.array, mask.affine
    )  # (instances, rows, cols)

    written = pydicom.dcmread(tmp_path / "rs.dcm")
    source = found[0][1]
    assert written.Modality == "RTSTRUCT" and written.SOPClassUID == RT_STRUCTURE_SET_STORAGE
    assert (written.PatientID, written.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    # the patient and study attributes the standard wants present, empty where the source has none
    assert all(keyword in written for keyword in (*COPIED_OR_EMPTY, "OperatorsName", "StructureSetDate"))
    assert written.AccessionNumber == source.get("AccessionNumber", "")
    (frame,) = written.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == source.FrameOfReferenceUID
    # and the Frame of Reference module itself, as the standard's validators want it (no reference point here)
    assert written.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert "PositionReferenceIndicator" in written and written.PositionReferenceIndicator == ""
    (referenced_series,) = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence
    assert referenced_series.SeriesInstanceUID == source.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced_series.ContourImageSequence} == set(images)
    names = {int(roi.ROINumber): roi.ROIName for roi in written.StructureSetROISequence}
    assert names == {
        n: ("bright block" if v == 4 else f"structure {v}") for n, v in enumerate(values, start=1)
    }
    assert len(values) == 2 and on_instances.any()
    for roi, value in zip(written.ROIContourSequence, values, strict=True):
        drawn = np.zeros(on_instances.shape, bool)
        by_instance: dict[int, list] = {}
        for contour in roi.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            (image,) = contour.ContourImageSequence
            index, dataset = images[image.ReferencedSOPInstanceUID]
            points = np.array(contour.ContourData, float).reshape(-1, 3)
            assert len(points) == contour.NumberOfContourPoints
            solved = np.array([_solved(point, dataset) for point in points])
            assert np.allclose(solved[:, 2], 0, atol=1e-3)  # on that image's plane
            assert np.allclose(solved[:, :2] % 1, 0.5, atol=1e-3)  # at its pixels' corners
            by_instance.setdefault(index, []).append(solved[:, :2])
        united = np.zeros(on_instances.shape, bool)  # each polygon filled on its own: a reader's other way
        for index, contours in by_instance.items():
            drawn[index] = fill_contours(contours, on_instances.shape[1:])
            united[index] = np.logical_or.reduce(
                [fill_contours([c], on_instances.shape[1:]) for c in contours]
            )
        assert np.array_equal(drawn, on_instances == value), value
        assert np.array_equal(united, on_instances == value), value

    read = load_rtstruct_labels(
        tmp_path / "rs.dcm", tmp_path / "series", {"bright block": 4, "structure 2": 2}
    )
    assert np.array_equal(read.array, mask.array) and np.allclose(read.affine, mask.affine)
    # scored against the NIfTI mask, ROIs matched to values by name through a label table
    (tmp_path / "ref").mkdir()
    nib.save(nib.load(tmp_path / "mask.nii.gz"), tmp_path / "ref" / "rs.nii.gz")
    (tmp_path / "ref" / "labels.json").write_text(json.dumps({"2": "structure 2", "4": "bright block"}))
    (tmp_path / "pred").mkdir()
    (tmp_path / "rs.dcm").rename(tmp_path / "pred" / "rs.dcm")
    argv = ["score", str(tmp_path / "pred"), str(tmp_path / "ref"), "--images", str(tmp_path / "series")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| bright block | 1 | 1.000" in printed and "| structure 2 | 1 | 1.000" in printed


def test_an_rt_structure_set_of_one_volume_of_an_enhanced_file_references_its_frames(tmp_path):
    """The second of two volumes in one enhanced file: each contour references that volume's frame at its
    position, and reads back to the mask."""
    pytest.importorskip("highdicom")
    from msa_hf.data import volume_from_axial_slices
    from msa_hf.data.dicom_stacks import find_stacks
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import VolumeReadError, frame_value, load_volume
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_enhanced_acquisitions

    rng = np.random.default_rng(1)
    path = write_enhanced_acquisitions(
        tmp_path, [rng.integers(-100, 100, (6, 12, 16)).astype(np.float32) for _ in "ab"]
    )
    key = "4/FrameAcquisitionNumber=2"
    grid = load_volume(path, series=key)
    drawn = np.zeros((6, 12, 16), np.uint8)
    drawn[1:4, 2:9, 3:12] = 1
    canonical = volume_from_axial_slices(drawn)
    write_rtstruct(path, canonical, grid.affine, tmp_path / "rs.dcm", {1: "block"}, series=key)
    (stack,) = [s for s in find_stacks(path) if s.key == key]
    header = pydicom.dcmread(path, stop_before_pixels=True)
    written = pydicom.dcmread(tmp_path / "rs.dcm")
    contours = written.ROIContourSequence[0].ContourSequence
    assert len(contours) == 3
    for contour in contours:
        (image,) = contour.ContourImageSequence
        frame = int(image.ReferencedFrameNumber)
        assert frame - 1 in stack.frame_indices and image.ReferencedSOPInstanceUID == header.SOPInstanceUID
        position = frame_value(header, frame - 1, "PlanePositionSequence", "ImagePositionPatient")
        normal = np.cross(
            *np.array(
                frame_value(header, 0, "PlaneOrientationSequence", "ImageOrientationPatient"), float
            ).reshape(2, 3)
        )
        points = np.array(contour.ContourData, float).reshape(-1, 3)
        assert np.allclose((points - np.array(position, float)) @ normal, 0, atol=1e-3)
    read = load_rtstruct_labels(tmp_path / "rs.dcm", path, series=key)
    assert np.array_equal(read.array, canonical) and np.allclose(read.affine, grid.affine)
    with pytest.raises(
        VolumeReadError, match=r"none of its ROIs \(block\) is named in the label table \(Block\)"
    ):
        load_rtstruct_labels(tmp_path / "rs.dcm", path, {"Block": 1}, series=key)


def _with_body(rtstruct, body_rtstruct) -> None:
    """Add the one ROI of `body_rtstruct` to `rtstruct` as ROI 2 named BODY (as a planning system's export
    holds the outline of the body beside the organs)."""
    target, body = pydicom.dcmread(rtstruct), pydicom.dcmread(body_rtstruct)
    roi, contours = body.StructureSetROISequence[0], body.ROIContourSequence[0]
    observation = body.RTROIObservationsSequence[0]
    roi.ROINumber, roi.ROIName, contours.ReferencedROINumber = 2, "BODY", 2
    observation.ObservationNumber = observation.ReferencedROINumber = 2
    target.StructureSetROISequence.append(roi)
    target.ROIContourSequence.append(contours)
    target.RTROIObservationsSequence.append(observation)
    target.save_as(rtstruct)


def _liver_in_body(tmp_path, body_slices: slice):
    """`source/images/case1` (a CT series) labelled by `source/labels/case1.dcm`, an RT structure set of the
    liver (ROI 1) and the body outline around it (ROI 2, on `body_slices`); returns the source, the series'
    volume and both display-frame masks."""
    from msa_hf.data import volume_from_axial_slices
    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_dicom_series

    source = tmp_path / "source"
    image = np.random.default_rng(2).integers(-100, 100, (8, 24, 28)).astype(np.float32)
    write_dicom_series(source / "images" / "case1", image)
    series = load_volume(source / "images" / "case1")
    liver, body = np.zeros((8, 24, 28), np.uint8), np.zeros((8, 24, 28), np.uint8)
    liver[2:6, 5:12, 6:15] = 1
    body[body_slices, 2:22, 3:26] = 1
    (source / "labels").mkdir(parents=True)
    write_rtstruct(source / "images" / "case1", volume_from_axial_slices(liver), series.affine,
                   source / "labels" / "case1.dcm", {1: "Liver"})  # fmt: skip
    write_rtstruct(source / "images" / "case1", volume_from_axial_slices(body), series.affine,
                   tmp_path / "body.dcm", {1: "BODY"})  # fmt: skip
    _with_body(source / "labels" / "case1.dcm", tmp_path / "body.dcm")
    return source, series, liver, body


def test_prepare_reads_the_rois_a_label_table_names_from_a_structure_set(tmp_path):
    """A case labelled by an RT structure set holding the liver and the body outline around it: without a
    label table the overlapping ROIs skip the case, named; a table naming the liver reads it alone, on the
    series' grid."""
    from msa_hf.data import axial_slices, load_prepared, prepare_dataset

    source, series, liver, body = _liver_in_body(tmp_path, slice(None))
    with pytest.raises(ValueError, match="no usable case") as refused:
        prepare_dataset(source, tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert "ROIs 'Liver' and 'BODY' overlap" in str(refused.value) and "label table" in str(refused.value)
    # ROIs given one value are one structure, overlap or not
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels

    union = load_rtstruct_labels(
        source / "labels" / "case1.dcm", source / "images" / "case1", {"Liver": 1, "BODY": 1}
    )
    assert np.array_equal(axial_slices(union.array), liver | body)
    (source / "labels.json").write_text(json.dumps({"1": "Liver"}))
    report = prepare_dataset(source, tmp_path / "out2", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases and report.class_names == {1: "Liver"}
    rows = sorted(load_prepared(tmp_path / "out2")["train"], key=lambda row: row["slice"])
    labels = np.stack([np.asarray(row["label"]) for row in rows])
    images = np.stack([np.asarray(row["image"]) for row in rows])
    assert np.array_equal(labels, liver[2:6]) and np.array_equal(images, axial_slices(series.array)[2:6])


def test_planning_objects_are_left_out_where_no_table_chooses_the_rois(tmp_path):
    """The body outline typed EXTERNAL (as planning systems type it): without a table, prepare leaves it out and
    reads the liver alone, and its report names what it left out; a table that names the body reads it; a
    structure set of planning objects alone is refused, naming them."""
    from msa_hf.data import axial_slices, load_prepared, prepare_dataset
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import VolumeReadError

    source, _, liver, body = _liver_in_body(tmp_path, slice(None))
    rtstruct = source / "labels" / "case1.dcm"
    dataset = pydicom.dcmread(rtstruct)
    dataset.RTROIObservationsSequence[1].RTROIInterpretedType = "EXTERNAL"  # ROI 2, the body
    dataset.save_as(rtstruct)
    report = prepare_dataset(source, tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert not report.skipped_cases and report.class_names == {1: "Liver"}
    assert any("left out: BODY (EXTERNAL)" in warning for warning in report.warnings)
    rows = sorted(load_prepared(tmp_path / "out")["train"], key=lambda row: row["slice"])
    assert np.array_equal(np.stack([np.asarray(row["label"]) for row in rows]), liver[2:6])
    named = load_rtstruct_labels(rtstruct, source / "images" / "case1", {"BODY": 5})
    assert np.array_equal(axial_slices(named.array), body * 5)
    dataset.RTROIObservationsSequence[0].RTROIInterpretedType = "MARKER"
    dataset.save_as(rtstruct)
    with pytest.raises(
        VolumeReadError, match=r"all planning objects \(Liver \(MARKER\), BODY \(EXTERNAL\)\)"
    ):
        load_rtstruct_labels(rtstruct, source / "images" / "case1")


def test_many_dicom_series_are_written_as_rt_structure_sets(tiny_base, tmp_path):
    """`--dicom-output rtstruct` for a folder of series: each series' mask is `<series>.dcm`, an RT structure
    set whose contours read back to the NIfTI mask the same run writes without the option."""
    from msa_hf.cli import main
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import load_volume
    from msa_hf.testing import write_dicom_series

    for number in (2, 5):
        volume = np.full((6, 20, 24), -1000.0, np.float32)
        volume[1:5, 4 + number : 12 + number, 6:16] = 300.0
        write_dicom_series(tmp_path / "study" / f"SER{number}", volume, series_number=number)
    arguments = ["predict", str(tiny_base), str(tmp_path / "study" / "*"), "--slice", "2", "--box", "5", "4", "17",
                 "16", "--propagate", "--device", "cpu"]  # fmt: skip
    assert main([*arguments[:3], str(tmp_path / "nifti"), *arguments[3:]]) == 0
    assert main([*arguments[:3], str(tmp_path / "rt"), *arguments[3:], "--dicom-output", "rtstruct"]) == 0
    for number in (2, 5):
        written = pydicom.dcmread(tmp_path / "rt" / f"SER{number}.dcm")
        assert written.Modality == "RTSTRUCT"
        read = load_rtstruct_labels(tmp_path / "rt" / f"SER{number}.dcm", tmp_path / "study" / f"SER{number}")
        expected = load_volume(tmp_path / "nifti" / f"SER{number}.nii.gz", is_label=True)
        assert expected.array.any() and np.array_equal(read.array, expected.array), number
    assert "SER2.dcm" in (tmp_path / "rt" / "summary.csv").read_text()


def _patient_download(root, seg_of_second: bool = False) -> dict:
    """A download laid out as TCIA's: per patient a study of a CT and an MR, and an RT structure set of a GTV
    drawn on the CT (the second patient also a DICOM-SEG of it, with `seg_of_second`). Returns each patient's
    label and CT slices `(8, 20, 24)`."""
    from msa_hf.data import axial_slices, volume_from_axial_slices
    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_dicom_series

    rng = np.random.default_rng(3)
    drawn = {}
    for index, patient in enumerate(("LUNG1-001", "LUNG1-002")):
        ct = root / patient / "study" / "CT"
        write_dicom_series(ct, rng.integers(-100, 100, (8, 20, 24)).astype(np.float32), series_number=2)
        write_dicom_series(
            root / patient / "study" / "MR", np.zeros((5, 20, 24), np.float32), series_number=7
        )
        series = load_volume(ct)
        labels = np.zeros((8, 20, 24), np.uint8)
        labels[2 + index : 6, 4:12, 5:15] = 1
        drawn[patient] = (labels, axial_slices(series.array))
        canonical = volume_from_axial_slices(labels)
        write_rtstruct(ct, canonical, series.affine, root / patient / "RTSTRUCT" / "1-1.dcm", {1: "GTV-1"})
        if index == 1 and seg_of_second:
            from msa_hf.inference.dicom_seg import write_dicom_seg

            write_dicom_seg(ct, canonical, series.affine, root / patient / "SEG" / "1-1.dcm", {1: "GTV-1"})
    return drawn


def test_prepare_reads_a_dicom_export_of_patient_folders(tmp_path):
    """A download laid out as one folder per patient, each holding its series (a CT and an MR) and the label
    objects drawn on the CT: each folder is a case read in the series its label object references. A folder
    holding both a DICOM-SEG and an RT structure set is skipped, naming both, until --dicom-labels chooses."""
    pytest.importorskip("highdicom")
    from msa_hf.data import load_prepared, prepare_dataset

    root = tmp_path / "download"
    drawn = _patient_download(root, seg_of_second=True)
    report = prepare_dataset(root, tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0))
    assert [case["case_id"] for case in report.skipped_cases] == ["LUNG1-002"]
    reason = report.skipped_cases[0]["reason"]
    assert (
        "RTSTRUCT/1-1.dcm (rtstruct)" in reason
        and "SEG/1-1.dcm (seg)" in reason
        and "--dicom-labels" in reason
    )
    report = prepare_dataset(
        root, tmp_path / "out2", kind="volumes", split=(1.0, 0.0, 0.0), dicom_labels="rtstruct"
    )
    assert not report.skipped_cases and report.class_names == {1: "GTV-1"}
    rows = load_prepared(tmp_path / "out2")["train"]
    for patient, (labels, images) in drawn.items():
        case = sorted((r for r in rows if r["case_id"] == patient), key=lambda r: r["slice"])
        kept = slice(2 + (patient == "LUNG1-002"), 6)  # the labelled slices
        assert np.array_equal(np.stack([np.asarray(r["label"]) for r in case]), labels[kept]), patient
        assert np.array_equal(np.stack([np.asarray(r["image"]) for r in case]), images[kept]), patient


def test_overlapping_structures_are_read_as_regions(tmp_path):
    """The liver inside the body outline, both wanted: with `overlapping`, each structure is a region of the
    label map's codes (a bit each), and each region's mask is that structure's own, overlap included, in
    prepare's rows and in the reader; a label map input or remapped values are refused."""
    from msa_hf.data import (
        axial_slices,
        load_prepared,
        prepare_dataset,
        read_regions,
    )
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.tasks import structure_mask

    source, series, liver, body = _liver_in_body(tmp_path, slice(1, 7))
    read = load_rtstruct_labels(
        source / "labels" / "case1.dcm",
        source / "images" / "case1",
        {"Liver": 1, "BODY": 2},
        overlapping=True,
    )
    assert np.array_equal(axial_slices(read.array), liver * 1 | body * 2)  # bit 0 the liver, bit 1 the body

    report = prepare_dataset(
        source, tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0), overlapping=True
    )
    assert not report.skipped_cases and report.class_names == {
        1: "Liver",
        2: "BODY",
    }  # the file's ROI numbers
    regions = read_regions(tmp_path / "out")
    assert regions == {1: (3,), 2: (2, 3)}  # the codes that occur: the body alone, both (the liver is inside)
    assert report.slices_per_class == {"Liver": 4, "BODY": 6}
    rows = sorted(load_prepared(tmp_path / "out")["train"], key=lambda row: row["slice"])
    stacked = np.stack([np.asarray(row["label"]) for row in rows])
    assert np.array_equal(structure_mask(stacked, 1, regions), liver[1:7].astype(bool))
    assert np.array_equal(structure_mask(stacked, 2, regions), body[1:7].astype(bool))
    with pytest.raises(ValueError, match="--remap-labels"):
        prepare_dataset(source, tmp_path / "out2", kind="volumes", split=(1.0, 0.0, 0.0), overlapping=True,
                        remap_labels={1: 2})  # fmt: skip
    nifti = tmp_path / "nifti"
    for folder in ("imagesTr", "labelsTr"):
        (nifti / folder).mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), nifti / "imagesTr" / "case.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), np.eye(4)), nifti / "labelsTr" / "case.nii.gz")
    with pytest.raises(ValueError, match="these labels are label maps"):
        prepare_dataset(nifti, tmp_path / "out3", kind="volumes", split=(1.0, 0.0, 0.0), overlapping=True)
    with pytest.raises(ValueError, match="these are pictures with masks"):
        prepare_dataset(nifti, tmp_path / "out4", kind="images", overlapping=True)


def test_contours_without_image_references_land_by_position(tmp_path):
    """A structure set whose contours name no image (older planning systems write none) is placed by each
    contour's position along the slice normal: the same mask; a contour between two slices is refused."""
    from msa_hf.data import volume_from_axial_slices
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import VolumeReadError, load_volume
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_dicom_series

    write_dicom_series(tmp_path / "series", np.zeros((6, 16, 20), np.float32))
    series = load_volume(tmp_path / "series")
    drawn = np.zeros((6, 16, 20), np.uint8)
    drawn[1:5, 3:12, 4:15] = 1
    drawn[2, 6:8, 7:9] = 0  # a hole
    canonical = volume_from_axial_slices(drawn)
    write_rtstruct(tmp_path / "series", canonical, series.affine, tmp_path / "rs.dcm", {1: "block"})
    written = pydicom.dcmread(tmp_path / "rs.dcm")
    for contour in written.ROIContourSequence[0].ContourSequence:
        del contour.ContourImageSequence
    written.save_as(tmp_path / "unreferenced.dcm")
    read = load_rtstruct_labels(tmp_path / "unreferenced.dcm", tmp_path / "series")
    assert np.array_equal(read.array, canonical)
    contour = written.ROIContourSequence[0].ContourSequence[0]
    points = np.array(contour.ContourData, float).reshape(-1, 3)
    points[:, 2] += 1.0  # half of the 2 mm between slices
    contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
    written.save_as(tmp_path / "between.dcm")
    with pytest.raises(VolumeReadError, match="lies on no slice"):
        load_rtstruct_labels(tmp_path / "between.dcm", tmp_path / "series")


def test_a_structure_drawn_in_two_overlapping_strokes_is_read_as_one_region(tmp_path):
    """A structure set whose ROI has two contours on one slice that overlap without one holding the other
    (two strokes, as a hand draws them) is read as their union, not with the crossing cut out."""
    from msa_hf.data import volume_from_axial_slices
    from msa_hf.data.rtstruct_labels import load_rtstruct_labels
    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_dicom_series

    write_dicom_series(tmp_path / "series", np.zeros((4, 16, 20), np.float32))
    series = load_volume(tmp_path / "series")
    first, second = np.zeros((4, 16, 20), np.uint8), np.zeros((4, 16, 20), np.uint8)
    first[2, 2:9, 3:10] = 1
    second[2, 5:13, 7:16] = 1
    write_rtstruct(
        tmp_path / "series", volume_from_axial_slices(first), series.affine, tmp_path / "a.dcm", {1: "x"}
    )
    write_rtstruct(
        tmp_path / "series", volume_from_axial_slices(second), series.affine, tmp_path / "b.dcm", {1: "x"}
    )
    combined = pydicom.dcmread(tmp_path / "a.dcm")
    combined.ROIContourSequence[0].ContourSequence.append(
        pydicom.dcmread(tmp_path / "b.dcm").ROIContourSequence[0].ContourSequence[0]
    )
    combined.save_as(tmp_path / "strokes.dcm")
    read = load_rtstruct_labels(tmp_path / "strokes.dcm", tmp_path / "series")
    assert np.array_equal(read.array, volume_from_axial_slices(first | second))


def test_a_download_of_patient_folders_is_resegmented_from_its_labels_and_scored(tiny_base, tmp_path, capsys):
    """`predict MODEL download/ OUT --prompts-from-labels download/`: each patient folder is an input, read in
    the CT its structure set was drawn on and prompted from that structure set; `score OUT download/` pairs
    each mask with the structure set in its patient's folder and finds the series there."""
    from msa_hf.cli import main
    from msa_hf.data import axial_slices
    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.batch import collect_items, is_batch_source, predict_batch, prompts_from_label_map
    from msa_hf.inference.predictor import predict_file
    from msa_hf.testing import BoxFillSam

    root = tmp_path / "download"
    drawn = _patient_download(root)
    assert is_batch_source(root, root) and not is_batch_source(root)  # one study, unless its labels prompt it
    items = collect_items(root, tmp_path / "out", labels_dir=root, dicom_output="rtstruct")
    assert [
        (item.input.name, item.labels.relative_to(root).as_posix(), item.output.name) for item in items
    ] == [
        ("LUNG1-001", "LUNG1-001/RTSTRUCT/1-1.dcm", "LUNG1-001.dcm"),
        ("LUNG1-002", "LUNG1-002/RTSTRUCT/1-1.dcm", "LUNG1-002.dcm"),
    ]
    from msa_hf.data.dicom_stacks import find_stacks

    for item in items:  # the CT, not the MR beside it
        assert item.series == find_stacks(item.input / "study" / "CT")[0].series_uid
    rows = predict_batch(BoxFillSam(32), items, kind="box", show_progress=False)
    assert [row["status"] for row in rows] == ["ok", "ok"], rows
    for item in items:  # the same as that CT predicted alone with its structure set's boxes
        ct = root / item.input.name / "study" / "CT"
        prompts = prompts_from_label_map(item.labels, "box", volume=True, image_path=ct)
        predict_file(BoxFillSam(32), ct, tmp_path / f"{item.input.name}.nii.gz", prompts)
        alone = load_volume(tmp_path / f"{item.input.name}.nii.gz", is_label=True).array
        from msa_hf.data.rtstruct_labels import load_rtstruct_labels

        assert np.array_equal(load_rtstruct_labels(item.output, ct).array, alone), item.input.name

    # the command line: masks as NIfTI, then scored without naming where the series are
    assert main(["predict", str(tiny_base), str(root), str(tmp_path / "cli"), "--prompts-from-labels", str(root),
                 "--device", "cpu"]) == 0  # fmt: skip
    # a patient folder holding a DICOM-SEG beside its structure set: refused naming both, until one is chosen
    _patient_download(tmp_path / "both", seg_of_second=True)
    with pytest.raises(ValueError, match=r"LUNG1-002: 2 label objects .*--dicom-labels"):
        collect_items(tmp_path / "both", tmp_path / "out2", labels_dir=tmp_path / "both")
    chosen = collect_items(
        tmp_path / "both", tmp_path / "out2", labels_dir=tmp_path / "both", dicom_labels="rtstruct"
    )
    assert [item.labels.parent.name for item in chosen] == ["RTSTRUCT", "RTSTRUCT"]

    table = tmp_path / "cli" / "labels.json"  # the masks' values by the structure sets' ROI names
    assert f"msa-hf score {tmp_path / 'cli'} {root} --label-table {table}" in capsys.readouterr().out
    assert json.loads(table.read_text()) == {"1": "GTV-1"}
    masks = {}
    for patient, (labels, _) in drawn.items():
        masks[patient] = axial_slices(
            load_volume(tmp_path / "cli" / f"{patient}.nii.gz", is_label=True).array
        )
        assert masks[patient].shape == labels.shape  # on the CT's grid
    assert main(["score", str(tmp_path / "cli"), str(root), "--label-table", str(table)]) == 0
    printed = capsys.readouterr().out
    dices = [
        2 * ((masks[p] == 1) & (labels == 1)).sum() / ((masks[p] == 1).sum() + labels.sum())
        for p, (labels, _) in drawn.items()
    ]
    assert f"| GTV-1 | 2 | {np.mean(dices):.3f}" in printed, printed


def test_a_downloads_structures_take_one_value_in_every_case(tmp_path):
    """Two structure sets numbering their ROIs differently (the GTV is ROI 1 in one, 2 in the other; the body
    outline around it the other way round): prompted from them, each structure carries one value in every
    case (by name, alphabetically where the numbers disagree), the value the written label table names."""
    from msa_hf.data import volume_from_axial_slices
    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.batch import _item_prompts, collect_items, named_label_table
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.processing.prompts import box_from_mask
    from msa_hf.testing import write_dicom_series

    root = tmp_path / "download"
    gtv, body = np.zeros((6, 20, 24), bool), np.zeros((6, 20, 24), bool)
    gtv[2:4, 6:10, 8:12] = True
    body[1:5, 2:18, 3:21] = True
    for patient, numbering in (("P1", {"GTV-1": 1, "BODY": 2}), ("P2", {"BODY": 1, "GTV-1": 2})):
        ct = root / patient / "CT"
        write_dicom_series(ct, np.zeros((6, 20, 24), np.float32))
        masks = {
            numbering["GTV-1"]: volume_from_axial_slices(gtv),
            numbering["BODY"]: volume_from_axial_slices(body),
        }
        names = {value: name for name, value in numbering.items()}
        write_rtstruct(ct, masks, load_volume(ct).affine, root / patient / "RS" / "rs.dcm", names)
    items = collect_items(root, tmp_path / "out", labels_dir=root)
    assert [item.label_values for item in items] == [{"BODY": 1, "GTV-1": 2}] * 2
    assert named_label_table(items) == {1: "BODY", 2: "GTV-1"}
    for item in items:
        prompts = _item_prompts(item, "box", plane="axial")
        boxes = {(p.value, p.slice): p.box for p in prompts}
        for index in (2, 3):  # the GTV's slices: its own box, valued 2 in both cases
            assert boxes[(2, index)] == [float(v) for v in box_from_mask(gtv[index])], item.input.name
        assert {value for value, _ in boxes} == {1, 2}


def test_structures_named_on_the_command_line_pick_rois_as_a_table_would(tmp_path, capsys):
    """`prepare --structures Liver` reads the liver alone (the body outline around it is left out, so nothing
    overlaps), valued 1, as a label table naming it does; with a label table too, or for label maps, it is
    refused."""
    from msa_hf.cli import main
    from msa_hf.data import load_prepared

    source, _, liver, _ = _liver_in_body(tmp_path, slice(0, 8))
    argv = ["prepare", str(source), str(tmp_path / "out"), "--split", "1", "0", "0"]
    assert main([*argv, "--structures", "Liver"]) == 0
    rows = sorted(load_prepared(tmp_path / "out")["train"], key=lambda row: row["slice"])
    assert np.array_equal(np.stack([np.asarray(row["label"]) for row in rows]), liver[2:6])
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == {"1": "Liver"}
    capsys.readouterr()
    (tmp_path / "labels.json").write_text('{"1": "Liver"}')
    argv[2] = str(tmp_path / "out2")
    assert main([*argv, "--structures", "Liver", "--label-table", str(tmp_path / "labels.json")]) == 2
    assert "give one of them" in capsys.readouterr().err
    from msa_hf.testing import write_nifti_case

    write_nifti_case(tmp_path / "maps", "case")
    assert main(["prepare", str(tmp_path / "maps"), str(tmp_path / "out3"), "--structures", "liver"]) == 2
    assert "these labels are label maps" in capsys.readouterr().err
