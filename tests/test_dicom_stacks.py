# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A DICOM folder as a clinic exports it: a study's series (a localizer's three planes, two acquisitions in one
series) side by side, each read as its own volume, chosen by the key the refusal lists."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from msa_hf.data.dicom_stacks import choose_stack, find_stacks
from msa_hf.data.volumes import VolumeReadError, axial_slices, dicom_series_slices, load_volume
from msa_hf.testing.files import write_dicom_series, write_enhanced_acquisitions

pytest.importorskip("pydicom")


def _volume(seed: int, shape=(6, 12, 16)) -> np.ndarray:
    """Integer HU values, different for every seed (so a volume read from the wrong files shows)."""
    return np.random.default_rng(seed).integers(-1000, 1000, shape).astype(np.float32)


@pytest.fixture
def study(tmp_path):
    """A PACS export: DICOMDIR and a README beside nested series folders, and a flat folder of two series."""
    root = tmp_path / "export"
    base = root / "DICOM" / "PAT1" / "STD1"
    volumes = {"2": _volume(2), "5": _volume(5, (4, 12, 16))}
    write_dicom_series(base / "SER2", volumes["2"], series_number=2, description="Abdomen axial")
    write_dicom_series(base / "SER5", volumes["5"], series_number=5, description="Late phase")
    _write_dicomdir(root / "DICOMDIR")  # the export's directory: a DICOM file, not an image
    (root / "README.txt").write_text("exported by the PACS")
    return root, volumes


def _write_dicomdir(path) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory = pydicom.Dataset()
    directory.file_meta = meta
    directory.FileSetID = "EXPORT"
    directory.DirectoryRecordSequence = Sequence()
    directory.save_as(path, enforce_file_format=True)


def test_a_study_is_listed_by_series_and_each_is_read_alone(study):
    root, volumes = study
    stacks = find_stacks(root)
    assert [(s.key, len(s.files), s.orientation, s.description) for s in stacks] == [
        ("2", 6, "axial", "Abdomen axial"),
        ("5", 4, "axial", "Late phase"),
    ]
    with pytest.raises(VolumeReadError, match="holds 2 DICOM image stacks") as refused:
        load_volume(root)
    message = str(refused.value)
    assert (
        "--series KEY" in message
        and '2: 6 axial CT slices, "Abdomen axial" (in DICOM/PAT1/STD1/SER2)' in message
    )
    assert '5: 4 axial CT slices, "Late phase" (in DICOM/PAT1/STD1/SER5)' in message
    for number, volume in volumes.items():
        alone = load_volume(root / "DICOM" / "PAT1" / "STD1" / f"SER{number}")
        chosen = load_volume(root, series=number)
        assert np.array_equal(chosen.array, alone.array) and np.allclose(chosen.affine, alone.affine)
        assert np.array_equal(axial_slices(chosen.array), volume[:, :, ::-1])  # LPS columns, mirrored
    by_uid = choose_stack(root, stacks[1].series_uid)
    assert by_uid.key == "5"
    with pytest.raises(VolumeReadError, match="series '7' names none of them"):
        load_volume(root, series="7")


def test_two_acquisitions_at_the_same_positions_are_two_volumes(tmp_path):
    first, second = _volume(1), _volume(11)
    uids = write_dicom_series(tmp_path / "dual", first, attributes={"AcquisitionNumber": 1}, file_prefix="A")
    write_dicom_series(
        tmp_path / "dual", second, uids=uids, attributes={"AcquisitionNumber": 2}, file_prefix="B"
    )
    assert [s.key for s in find_stacks(tmp_path / "dual")] == [
        "3/AcquisitionNumber=1",
        "3/AcquisitionNumber=2",
    ]
    # stacked by position alone, the two would interleave into one volume of twelve slices
    with pytest.raises(VolumeReadError, match="holds 2 DICOM image stacks"):
        load_volume(tmp_path / "dual")
    with pytest.raises(VolumeReadError, match="series '3' names several of them"):
        load_volume(tmp_path / "dual", series="3")
    for key, expected in (("3/AcquisitionNumber=1", first), ("3/AcquisitionNumber=2", second)):
        volume = load_volume(tmp_path / "dual", series=key).array
        assert np.array_equal(axial_slices(volume), expected[:, :, ::-1])


def test_images_at_one_position_with_nothing_to_tell_them_apart_are_refused(tmp_path):
    uids = write_dicom_series(tmp_path / "twice", _volume(1), file_prefix="A")
    write_dicom_series(tmp_path / "twice", _volume(2), uids=uids, file_prefix="B")
    with pytest.raises(VolumeReadError, match="two images of one series at one position") as refused:
        load_volume(tmp_path / "twice")
    assert "Put each acquisition's files in a folder of its own" in str(refused.value)


def test_a_localizer_is_one_stack_per_plane(tmp_path):
    uids = write_dicom_series(tmp_path / "scout", _volume(1, (1, 12, 16)), series_number=1, file_prefix="A")
    write_dicom_series(
        tmp_path / "scout", _volume(2, (1, 12, 16)), series_number=1, uids=uids,
        orientation=(1, 0, 0, 0, 0, -1), file_prefix="B",
    )  # fmt: skip
    write_dicom_series(tmp_path / "scout", _volume(3, (3, 12, 16)), series_number=2, file_prefix="C")
    stacks = find_stacks(tmp_path / "scout")
    assert [(s.key, s.orientation, len(s.files)) for s in stacks] == [
        ("1/axial", "axial", 1),
        ("1/coronal", "coronal", 1),
        ("2", "axial", 3),
    ]
    found, _ = dicom_series_slices(tmp_path / "scout", series="2")
    assert [p.name[0] for p, _ in found] == ["C"] * 3


def test_a_multi_frame_file_without_frame_positions_is_refused_with_the_fix(tmp_path):
    """A cine loop (frames without positions in the patient) is not a volume: refused with what to do."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.Rows, dataset.Columns, dataset.NumberOfFrames = 4, 4, 3
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.PixelData = np.zeros((3, 4, 4), np.uint16).tobytes()
    (tmp_path / "enhanced").mkdir()
    dataset.save_as(tmp_path / "enhanced" / "CT.dcm", enforce_file_format=True)
    with pytest.raises(VolumeReadError, match="it holds multi-frame images") as refused:
        load_volume(tmp_path / "enhanced")
    assert "dcm2niix" in str(refused.value) and "CT.dcm" in str(refused.value)


def test_a_series_is_chosen_only_in_a_dicom_folder(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    with pytest.raises(VolumeReadError, match="a series is chosen in a DICOM folder"):
        load_volume(tmp_path / "scan.nii.gz", series="2")


def test_predict_segments_the_chosen_series_of_a_study(study, tiny_base, tmp_path, capsys):
    """`msa-hf predict --series` reads the series it names: its mask equals the one made from that series'
    folder alone, and its DICOM-SEG references that series' instances; a study without `--series` is refused
    with the listing before the model loads."""
    highdicom = pytest.importorskip("highdicom")
    from msa_hf.cli import main

    root, _ = study
    prompts = ["--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    alone = root / "DICOM" / "PAT1" / "STD1" / "SER5"
    assert main(["predict", str(tiny_base), str(alone), str(tmp_path / "alone.nii.gz"), *prompts]) == 0
    arguments = [
        "predict",
        str(tiny_base),
        str(root),
        str(tmp_path / "chosen.nii.gz"),
        "--series",
        "5",
        *prompts,
    ]
    assert main(arguments) == 0
    assert 'DICOM series 5: 4 axial CT slices, "Late phase"' in capsys.readouterr().out
    expected = load_volume(tmp_path / "alone.nii.gz", is_label=True).array
    assert expected.any() and np.array_equal(
        load_volume(tmp_path / "chosen.nii.gz", is_label=True).array, expected
    )
    assert main([*arguments[:3], str(tmp_path / "seg.dcm"), *arguments[4:]]) == 0
    segmentation = highdicom.seg.segread(tmp_path / "seg.dcm")
    (referenced,) = segmentation.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == choose_stack(root, "5").series_uid
    assert segmentation.SeriesDescription == "MSA segmentation of Late phase"  # as a PACS lists it
    capsys.readouterr()
    # refused before the model loads: a model that does not exist is never reached
    missing_model = str(tmp_path / "no-model")
    assert main(["predict", missing_model, str(root), str(tmp_path / "m.nii.gz"), *prompts]) != 0
    error = capsys.readouterr().err
    assert "holds 2 DICOM image stacks" in error and "2: 6 axial CT slices" in error
    assert not (tmp_path / "m.nii.gz").exists()
    assert main(["predict", missing_model, str(tmp_path / "alone.nii.gz"), str(tmp_path / "m.nii.gz"),
                 "--series", "5", *prompts]) != 0  # fmt: skip
    assert "a series is chosen in a DICOM folder" in capsys.readouterr().err


def test_a_folder_of_patients_points_to_a_glob_and_keys_repeated_numbers_by_uid(tmp_path):
    first = write_dicom_series(tmp_path / "cohort" / "p1", _volume(1), series_number=2)
    write_dicom_series(tmp_path / "cohort" / "p2", _volume(2), series_number=2)
    stacks = find_stacks(tmp_path / "cohort")
    assert first[0] in [stack.key for stack in stacks]  # series 2 twice: each is named by its UID
    with pytest.raises(VolumeReadError, match="quote a glob") as refused:
        load_volume(tmp_path / "cohort")
    assert f"'{tmp_path / 'cohort'}/*'" in str(refused.value)
    assert np.array_equal(
        load_volume(tmp_path / "cohort", series=first[0]).array, load_volume(tmp_path / "cohort" / "p1").array
    )
    # a study's series in one folder tree is a choice, not a batch
    with pytest.raises(VolumeReadError) as refused:
        write_dicom_series(tmp_path / "study" / "DICOM" / "SER1", _volume(1), series_number=1)
        write_dicom_series(tmp_path / "study" / "DICOM" / "SER2", _volume(2), series_number=2)
        load_volume(tmp_path / "study")
    assert "glob" not in str(refused.value)


def test_a_segmentation_series_is_described_after_its_source():
    from types import SimpleNamespace

    from msa_hf.inference.dicom_outputs import series_description

    assert (
        series_description(SimpleNamespace(SeriesDescription="Abdomen axial"), "MSA segmentation")
        == "MSA segmentation of Abdomen axial"
    )
    assert series_description(SimpleNamespace(SeriesDescription=""), "MSA contours") == "MSA contours"
    assert len(series_description(SimpleNamespace(SeriesDescription="x" * 80), "MSA segmentation")) == 64
    # 64 bytes of UTF-8, as validators count a LO value: 22 of them before the umlauts, 21 umlauts of two
    described = series_description(SimpleNamespace(SeriesDescription="ä" * 40), "MSA segmentation")
    assert described == "MSA segmentation of " + "ä" * 22 and len(described.encode()) == 64


def test_many_studies_are_segmented_in_the_series_asked_for(tmp_path, tiny_base, capsys):
    """`--series` for many inputs applies to each DICOM folder; a manifest's series column chooses per input."""
    from msa_hf.cli import main

    for patient, seed in (("p1", 10), ("p2", 20)):
        for number in (2, 5):
            write_dicom_series(
                tmp_path / "studies" / patient / f"SER{number}", _volume(seed + number), series_number=number
            )
    prompts = ["--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    for patient in ("p1", "p2"):
        for number in (2, 5):
            alone = tmp_path / "studies" / patient / f"SER{number}"
            assert (
                main(
                    [
                        "predict",
                        str(tiny_base),
                        str(alone),
                        str(tmp_path / f"{patient}-{number}.nii.gz"),
                        *prompts,
                    ]
                )
                == 0
            )
    expected = {
        name: load_volume(tmp_path / f"{name}.nii.gz", is_label=True).array
        for name in ("p1-2", "p1-5", "p2-2", "p2-5")
    }
    assert not np.array_equal(expected["p1-2"], expected["p1-5"])  # the series give different masks
    glob = str(tmp_path / "studies" / "*")
    assert main(["predict", str(tiny_base), glob, str(tmp_path / "all5"), "--series", "5", *prompts]) == 0
    for patient in ("p1", "p2"):
        written = load_volume(tmp_path / "all5" / f"{patient}.nii.gz", is_label=True).array
        assert np.array_equal(written, expected[f"{patient}-5"]), patient
    box = '[{"box": [3, 2, 12, 9], "slice": 2}]'
    import csv

    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "series", "prompts"])
        writer.writerows([["studies/p1", "2", box], ["studies/p2", "5", box]])
    assert (
        main(
            [
                "predict",
                str(tiny_base),
                str(tmp_path / "manifest.csv"),
                str(tmp_path / "chosen"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.array_equal(
        load_volume(tmp_path / "chosen" / "p1.nii.gz", is_label=True).array, expected["p1-2"]
    )
    assert np.array_equal(
        load_volume(tmp_path / "chosen" / "p2.nii.gz", is_label=True).array, expected["p2-5"]
    )
    # without a series, each study fails in its own row with the listing; the exit status says so
    capsys.readouterr()
    assert main(["predict", str(tiny_base), glob, str(tmp_path / "none"), *prompts]) == 1
    assert "holds 2 DICOM image stacks" in capsys.readouterr().out


def _enhanced_copy(series_folder, output, series_number=4):
    """The series in `series_folder` as one enhanced multi-frame CT file (highdicom's legacy conversion)."""
    highdicom = pytest.importorskip("highdicom")
    found, _ = dicom_series_slices(series_folder)
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[dataset for _, dataset in found], series_instance_uid=highdicom.UID(),
        series_number=series_number, sop_instance_uid=highdicom.UID(), instance_number=1,
    )  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    enhanced.save_as(output)
    return output


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, -1, 0)])
def test_an_enhanced_multi_frame_file_reads_as_its_series(tmp_path, orientation):
    """A whole CT volume in one enhanced multi-frame file reads to the voxels and geometry of the same series
    as single-frame files, alone, in a folder, or beside other series."""
    write_dicom_series(tmp_path / "classic", _volume(3), orientation=orientation, description="axial")
    path = _enhanced_copy(tmp_path / "classic", tmp_path / "one" / "CT.dcm")
    classic = load_volume(tmp_path / "classic")
    for source in (path, tmp_path / "one"):
        volume = load_volume(source)
        assert volume.modality == "CT" and np.array_equal(volume.array, classic.array)
        assert np.allclose(volume.affine, classic.affine)
    write_dicom_series(tmp_path / "one" / "SER9", _volume(9), series_number=9)
    stacks = find_stacks(tmp_path / "one")
    assert [(s.key, s.frames) for s in stacks] == [("4", 6), ("9", None)]
    assert "4: 6 axial CT frames in one file" in stacks[0].describe()
    assert np.array_equal(load_volume(tmp_path / "one", series="4").array, classic.array)
    with pytest.raises(VolumeReadError, match="an enhanced multi-frame file, one DICOM instance"):
        dicom_series_slices(tmp_path / "one", series="4")


def test_predict_segments_an_enhanced_file_as_its_series(tmp_path, tiny_base):
    from msa_hf.cli import main

    write_dicom_series(tmp_path / "classic", _volume(3))
    path = _enhanced_copy(tmp_path / "classic", tmp_path / "enhanced" / "CT.dcm")
    prompts = ["--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    assert (
        main(
            ["predict", str(tiny_base), str(tmp_path / "classic"), str(tmp_path / "classic.nii.gz"), *prompts]
        )
        == 0
    )
    assert main(["predict", str(tiny_base), str(path), str(tmp_path / "enhanced.nii.gz"), *prompts]) == 0
    expected = load_volume(tmp_path / "classic.nii.gz", is_label=True)
    written = load_volume(tmp_path / "enhanced.nii.gz", is_label=True)
    assert expected.array.any() and np.array_equal(written.array, expected.array)
    assert np.allclose(written.affine, expected.affine)
    # its DICOM-SEG: each frame of the file holds the mask on the slice at that frame's position
    highdicom = pytest.importorskip("highdicom")
    from msa_hf.inference.dicom_seg import labels_on_series_grid

    on_instances = labels_on_series_grid(tmp_path / "classic", expected.array, expected.affine)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    heights = [
        float(g.PlanePositionSequence[0].ImagePositionPatient[2])
        for g in header.PerFrameFunctionalGroupsSequence
    ]
    by_position = np.argsort(
        heights
    )  # the frames from the lowest slice up, as the single-frame series' order
    for source in (path, tmp_path / "enhanced"):
        output = tmp_path / f"seg-{source.name}.dcm"
        assert main(["predict", str(tiny_base), str(source), str(output), *prompts]) == 0
        drawn = highdicom.seg.segread(output).get_pixels_by_source_frame(
            source_sop_instance_uid=str(header.SOPInstanceUID), source_frame_numbers=list(range(1, len(heights) + 1)),
            segment_numbers=[1], assert_missing_frames_are_empty=True,
        )[..., 0]  # fmt: skip
        assert np.array_equal(drawn[by_position].astype(bool), on_instances.astype(bool)), source


def _two_acquisitions_in_one_file(tmp_path, numbers=(1, 2)):
    """`_volume(1)` and `_volume(2)` as two acquisitions (AcquisitionNumber `numbers`) of series 3 in `dual/`,
    and converted into one enhanced file `file/CT.dcm` (series 4)."""
    pytest.importorskip("highdicom")
    return write_enhanced_acquisitions(tmp_path, [_volume(1), _volume(2)], list(numbers))


def test_an_enhanced_file_of_two_acquisitions_is_read_as_two_stacks(tmp_path):
    """Two volumes at the same positions in one file (a multi-echo, multi-phase or converted dual acquisition)
    are listed as two stacks, each read to the voxels and grid of that acquisition's own series, never
    interleaved; the file or its folder, chosen by the listed key."""
    from msa_hf.data.dicom_stacks import SeveralStacks

    path = _two_acquisitions_in_one_file(tmp_path)
    for source in (path, path.parent):
        with pytest.raises(SeveralStacks) as refused:
            load_volume(source)
        keys = [stack.key for stack in refused.value.stacks]
        assert keys == ["4/FrameAcquisitionNumber=1", "4/FrameAcquisitionNumber=2"]
        message = str(refused.value)
        assert "4/FrameAcquisitionNumber=2: 6 axial CT frames of one file" in message
        assert ("folder of its own" in message) == source.is_dir()
    frames = pydicom.dcmread(path, stop_before_pixels=True).PerFrameFunctionalGroupsSequence
    for number in (1, 2):
        (stack,) = [s for s in find_stacks(path) if s.key == f"4/FrameAcquisitionNumber={number}"]
        assert [frames[f].FrameContentSequence[0].FrameAcquisitionNumber for f in stack.frame_indices] == [
            number
        ] * 6
        classic = load_volume(tmp_path / "dual", series=f"3/AcquisitionNumber={number}")
        for source in (path, path.parent):
            volume = load_volume(source, series=stack.key)
            assert volume.modality == "CT" and np.array_equal(volume.array, classic.array), (number, source)
            assert np.allclose(volume.affine, classic.affine)
    assert not np.array_equal(
        load_volume(path, series=keys[0]).array, load_volume(path, series=keys[1]).array
    )
    # the part after the series number chooses as well: one --series for cases whose series numbers differ
    assert np.array_equal(
        load_volume(path, series="FrameAcquisitionNumber=2").array, load_volume(path, series=keys[1]).array
    )
    assert np.array_equal(
        load_volume(tmp_path / "dual", series="AcquisitionNumber=2").array,
        load_volume(path, series=keys[1]).array,
    )
    with pytest.raises(VolumeReadError, match="names none of them"):
        load_volume(path, series="FrameAcquisitionNumber=3")


def test_prepare_reads_the_same_acquisition_of_every_case_by_the_part_after_its_series(tmp_path):
    """Cases whose enhanced files number their series differently (4 and 7) prepared with one --series: the
    key's part after the series number names the second acquisition of each."""
    import nibabel as nib

    from msa_hf.data import load_prepared, prepare_dataset

    pytest.importorskip("highdicom")
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    expected = {}
    for index, number in enumerate((4, 7)):
        path = write_enhanced_acquisitions(
            tmp_path / f"case{index}", [_volume(10 + index), _volume(20 + index)], series_number=number
        )
        path.rename(source / "images" / f"case{index}.dcm")
        chosen = load_volume(
            source / "images" / f"case{index}.dcm", series=f"{number}/FrameAcquisitionNumber=2"
        )
        labels = np.zeros(chosen.array.shape, np.uint8)
        labels[2:6, 3:8, 1:4] = 1
        nib.save(nib.Nifti1Image(labels, chosen.affine), source / "labels" / f"case{index}.nii.gz")
        expected[f"case{index}"] = axial_slices(chosen.array)
    report = prepare_dataset(
        source, tmp_path / "out", kind="volumes", split=(1.0, 0.0, 0.0), series="FrameAcquisitionNumber=2",
        keep_empty_slices=True,
    )  # fmt: skip
    assert not report.skipped_cases
    rows = load_prepared(tmp_path / "out")["train"]
    assert sorted(set(rows["case_id"])) == ["case0", "case1"] and len(rows) == 12
    for row in rows:
        assert np.array_equal(np.asarray(row["image"]), expected[row["case_id"]][row["slice"]])


def test_an_enhanced_file_whose_volumes_nothing_tells_apart_is_refused_not_interleaved(tmp_path):
    path = _two_acquisitions_in_one_file(tmp_path, numbers=(1, 1))
    assert [stack.frame_indices for stack in find_stacks(path)] == [None]
    with pytest.raises(VolumeReadError, match="its 12 frames cannot be read as one volume.*dcm2niix"):
        load_volume(path)
    # the frames' own reader refuses them too, never stacking two frames of one position
    from msa_hf.data.volumes import load_enhanced_dicom

    with pytest.raises(VolumeReadError, match="lie at one position, and nothing in the file tells"):
        load_enhanced_dicom(path, frames=list(range(12)))


def test_an_enhanced_file_of_two_orientations_is_a_stack_per_plane(tmp_path):
    """A file holding an axial and a coronal stack (a localizer's planes, converted) is two stacks keyed by
    plane, each read as the classic files of that orientation are."""
    highdicom = pytest.importorskip("highdicom")
    uids = write_dicom_series(tmp_path / "planes", _volume(1), file_prefix="AX")
    write_dicom_series(
        tmp_path / "planes", _volume(2), uids=uids, orientation=(1, 0, 0, 0, 0, -1), file_prefix="CO"
    )
    datasets = [pydicom.dcmread(path) for path in sorted((tmp_path / "planes").iterdir())]
    highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=highdicom.UID(), series_number=4,
        sop_instance_uid=highdicom.UID(), instance_number=1,
    ).save_as(tmp_path / "CT.dcm")  # fmt: skip
    stacks = find_stacks(tmp_path / "CT.dcm")
    assert [(stack.key, stack.orientation, stack.frames) for stack in stacks] == [
        ("4/axial", "axial", 6),
        ("4/coronal", "coronal", 6),
    ]
    for plane in ("axial", "coronal"):
        classic = load_volume(tmp_path / "planes", series=f"3/{plane}")
        volume = load_volume(tmp_path / "CT.dcm", series=f"4/{plane}")
        assert np.array_equal(volume.array, classic.array) and np.allclose(volume.affine, classic.affine)


def test_predict_segments_one_volume_of_an_enhanced_file(tmp_path, tiny_base, capsys):
    """predict on the second acquisition of a two-acquisition file: the mask of that acquisition's own series;
    without --series, the stacks listed before the model loads; voxel prompts naming the file's own frame
    numbers."""
    from msa_hf.cli import main
    from msa_hf.inference.predictor import Prompt
    from msa_hf.inference.prompt_frames import prompts_in_display_frame

    path = _two_acquisitions_in_one_file(tmp_path)
    key = "4/FrameAcquisitionNumber=2"
    prompts = ["--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    assert main(["predict", str(tiny_base), str(tmp_path / "dual"), str(tmp_path / "classic.nii.gz"), "--series",
                 "3/AcquisitionNumber=2", *prompts]) == 0  # fmt: skip
    assert main(["predict", str(tiny_base), str(path), str(tmp_path / "file.nii.gz"), "--series", key,
                 *prompts]) == 0  # fmt: skip
    expected = load_volume(tmp_path / "classic.nii.gz", is_label=True)
    written = load_volume(tmp_path / "file.nii.gz", is_label=True)
    assert expected.array.any() and np.array_equal(written.array, expected.array)
    capsys.readouterr()
    missing_model = str(tmp_path / "no-model")  # refused before the model loads: never reached
    assert main(["predict", missing_model, str(path), str(tmp_path / "none.nii.gz"), *prompts]) == 2
    assert "holds 2 DICOM image stacks" in capsys.readouterr().err

    (stack,) = [s for s in find_stacks(path) if s.key == key]
    pixels = pydicom.dcmread(path).pixel_array.astype(np.float32) - 1024  # (frames, rows, columns), HU
    slices = axial_slices(load_volume(path, series=key).array)
    for frame, row, column in ((stack.frame_indices[3], 5, 7), (stack.frame_indices[0], 10, 2)):
        (prompt,) = prompts_in_display_frame(
            [Prompt(points=[[column, row]], slice=frame + 1)], path, "voxel", series=key
        )
        (x, y) = prompt.points[0]
        assert slices[prompt.slice, int(y), int(x)] == pixels[frame, row, column]


def test_without_highdicom_an_enhanced_input_says_what_to_install_before_the_model_loads(
    tmp_path, monkeypatch, capsys
):
    import sys

    from msa_hf.cli import main

    write_dicom_series(tmp_path / "classic", _volume(3))
    path = _enhanced_copy(tmp_path / "classic", tmp_path / "enhanced" / "CT.dcm")
    monkeypatch.setitem(sys.modules, "highdicom", None)  # as where the dicom extra is not installed
    for source in (path, tmp_path / "enhanced"):
        code = main(["predict", str(tmp_path / "no-model"), str(source), str(tmp_path / "m.nii.gz"), "--slice", "1",
                     "--box", "1", "1", "5", "5"])  # fmt: skip
        assert code != 0 and 'needs highdicom: pip install "msa_hf[dicom]"' in capsys.readouterr().err, source


def test_many_enhanced_files_are_segmented_as_volumes(tmp_path, tiny_base):
    from msa_hf.cli import main

    write_dicom_series(tmp_path / "classic", _volume(3))
    for name in ("a", "b"):
        _enhanced_copy(tmp_path / "classic", tmp_path / "scans" / f"{name}.dcm")
    prompts = ["--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    assert (
        main(["predict", str(tiny_base), str(tmp_path / "classic"), str(tmp_path / "alone.nii.gz"), *prompts])
        == 0
    )
    assert (
        main(["predict", str(tiny_base), str(tmp_path / "scans" / "*.dcm"), str(tmp_path / "out"), *prompts])
        == 0
    )
    expected = load_volume(tmp_path / "alone.nii.gz", is_label=True).array
    for name in ("a", "b"):  # each mask a NIfTI named after its file
        assert np.array_equal(load_volume(tmp_path / "out" / f"{name}.nii.gz", is_label=True).array, expected)


def test_enhanced_files_take_prompts_from_nifti_label_maps_on_their_grid(tmp_path, tiny_base, capsys):
    """A label map on an enhanced file's grid is accepted (its grid read from the header, as for a series) and
    gives the masks the same labels give the series as single-frame files; one off the grid fails its row."""
    import nibabel as nib

    from msa_hf.cli import main

    write_dicom_series(tmp_path / "series" / "a", _volume(3))
    _enhanced_copy(tmp_path / "series" / "a", tmp_path / "enhanced" / "a.dcm")
    series = load_volume(tmp_path / "series" / "a")
    labels = np.zeros(series.array.shape, np.uint8)
    labels[4:10, 3:9, 1:4] = 1
    for folder in ("series-labels", "enhanced-labels"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(labels, series.affine), tmp_path / folder / "a.nii.gz")
    common = ["--device", "cpu"]
    assert main(["predict", str(tiny_base), str(tmp_path / "series" / "*"), str(tmp_path / "out-series"),
                 "--prompts-from-labels", str(tmp_path / "series-labels"), *common]) == 0  # fmt: skip
    assert main(["predict", str(tiny_base), str(tmp_path / "enhanced" / "*.dcm"), str(tmp_path / "out-enhanced"),
                 "--prompts-from-labels", str(tmp_path / "enhanced-labels"), *common]) == 0  # fmt: skip
    expected = load_volume(tmp_path / "out-series" / "a.nii.gz", is_label=True).array
    written = load_volume(tmp_path / "out-enhanced" / "a.nii.gz", is_label=True).array
    assert expected.any() and np.array_equal(written, expected)
    shifted = series.affine.copy()  # a slice fewer and half a slice off the series' lattice: another grid
    shifted[:3, 3] += 0.5 * series.affine[:3, 2]
    nib.save(nib.Nifti1Image(labels[:, :, :4], shifted), tmp_path / "enhanced-labels" / "a.nii.gz")
    capsys.readouterr()
    assert main(["predict", str(tiny_base), str(tmp_path / "enhanced" / "*.dcm"), str(tmp_path / "out-off"),
                 "--prompts-from-labels", str(tmp_path / "enhanced-labels"), *common]) == 1  # fmt: skip
    assert "has shape (16, 12, 4), its input" in capsys.readouterr().out


def test_a_dicom_seg_of_one_volume_of_an_enhanced_file_references_that_volume_alone(tmp_path, tiny_base):
    """A DICOM-SEG of the second of two volumes at the same positions: each segmentation frame lies at its
    source frame's position and references that volume's frame there, never the other volume's; read back
    onto that volume it gives the mask predict writes as NIfTI; read onto the other volume it is refused,
    naming the volume it was drawn on."""
    highdicom = pytest.importorskip("highdicom")
    from msa_hf.cli import main
    from msa_hf.data.dicom_seg_labels import load_seg_labels
    from msa_hf.data.volumes import frame_value

    path = _two_acquisitions_in_one_file(tmp_path)
    key, other = "4/FrameAcquisitionNumber=2", "4/FrameAcquisitionNumber=1"
    prompts = ["--series", key, "--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    assert main(["predict", str(tiny_base), str(path), str(tmp_path / "mask.nii.gz"), *prompts]) == 0
    assert main(["predict", str(tiny_base), str(path), str(tmp_path / "seg.dcm"), *prompts]) == 0
    expected = load_volume(tmp_path / "mask.nii.gz", is_label=True)
    assert expected.array.any()

    (stack,) = [s for s in find_stacks(path) if s.key == key]
    chosen = {frame + 1 for frame in stack.frame_indices}
    source = pydicom.dcmread(path, stop_before_pixels=True)
    segmentation = highdicom.seg.segread(tmp_path / "seg.dcm")
    assert 0 < segmentation.NumberOfFrames < len(chosen)  # the drawn slices alone
    for group in segmentation.PerFrameFunctionalGroupsSequence:
        (derivation,) = group.DerivationImageSequence
        (item,) = derivation.SourceImageSequence  # one frame: the chosen volume's, not its twin's
        frame = int(item.ReferencedFrameNumber)
        assert frame in chosen and item.ReferencedSOPInstanceUID == source.SOPInstanceUID
        position = frame_value(source, frame - 1, "PlanePositionSequence", "ImagePositionPatient")
        assert np.allclose(group.PlanePositionSequence[0].ImagePositionPatient, position)

    read = load_seg_labels(tmp_path / "seg.dcm", path, series=key)
    assert np.array_equal(read.array, expected.array) and np.allclose(read.affine, expected.affine)
    with pytest.raises(VolumeReadError, match=f"drawn on {key} of CT.dcm, not on {other}"):
        load_seg_labels(tmp_path / "seg.dcm", path, series=other)


def test_many_enhanced_files_read_the_volume_named_or_the_one_their_seg_was_drawn_on(tmp_path, tiny_base):
    """Many inputs that are two-volume enhanced files: `--series` chooses the volume of each; with DICOM-SEG
    label maps for prompts, each file's volume is the one its SEG was drawn on, without being named."""
    import shutil

    from msa_hf.cli import main
    from msa_hf.inference.dicom_seg import write_dicom_seg

    path = _two_acquisitions_in_one_file(tmp_path)
    key = "4/FrameAcquisitionNumber=2"
    for name in ("a", "b"):
        (tmp_path / "scans").mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / "scans" / f"{name}.dcm")
    box = ["--slice", "2", "--box", "3", "2", "12", "9", "--device", "cpu"]
    assert (
        main(["predict", str(tiny_base), str(path), str(tmp_path / "alone.nii.gz"), "--series", key, *box])
        == 0
    )
    expected = load_volume(tmp_path / "alone.nii.gz", is_label=True)
    assert expected.array.any()
    scans = str(tmp_path / "scans" / "*.dcm")
    assert main(["predict", str(tiny_base), scans, str(tmp_path / "named"), "--series", key, *box]) == 0
    # the mask as each file's DICOM-SEG label map: its tight box per slice, on the volume it was drawn on
    (tmp_path / "labels").mkdir()
    (tmp_path / "nifti-labels").mkdir()
    for name in ("a", "b"):
        write_dicom_seg(tmp_path / "scans" / f"{name}.dcm", expected.array, expected.affine,
                        tmp_path / "labels" / f"{name}.dcm", {1: "box"}, series=key)  # fmt: skip
        shutil.copy(
            tmp_path / "alone.nii.gz", tmp_path / "nifti-labels" / f"{name}.nii.gz"
        )  # the same, as NIfTI
    assert main(["predict", str(tiny_base), scans, str(tmp_path / "from-seg"), "--prompts-from-labels",
                 str(tmp_path / "labels"), "--device", "cpu"]) == 0  # fmt: skip
    assert main(["predict", str(tiny_base), scans, str(tmp_path / "from-nifti"), "--prompts-from-labels",
                 str(tmp_path / "nifti-labels"), "--series", key, "--device", "cpu"]) == 0  # fmt: skip
    for name in ("a", "b"):
        named = load_volume(tmp_path / "named" / f"{name}.nii.gz", is_label=True)
        assert np.array_equal(named.array, expected.array), name
        from_seg = load_volume(tmp_path / "from-seg" / f"{name}.nii.gz", is_label=True)
        from_nifti = load_volume(tmp_path / "from-nifti" / f"{name}.nii.gz", is_label=True)
        assert from_seg.array.any() and np.array_equal(from_seg.array, from_nifti.array), name
