"""NRRD and MetaImage volumes (3D Slicer's, grand-challenge.org's): read as the same scan in NIfTI is read,
written on the input's own grid, found by prepare and predict, scored. ITK's own conversion of a NIfTI file
is the reference for where the voxels of an ITK file lie."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from msa_hf.cli import main
from msa_hf.data import axial_slices, find_volume_pairs, load_prepared, prepare_dataset
from msa_hf.data.channels import volume_channel_count
from msa_hf.data.itk_files import itk_affine, itk_geometry, read_itk_header
from msa_hf.data.slicer_segmentations import slicer_segment_names, slicer_segmentation_names
from msa_hf.data.volumes import VolumeReadError, load_nifti, load_volume, save_volume
from msa_hf.evaluation.metrics import dice
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.inference.volume_predictor import grown_box
from msa_hf.testing import BrightInBoxSam, sphere_volume, write_nifti_case

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")
sitk.ProcessObject_SetGlobalWarningDisplay(False)  # ITK notes the NIfTI header fields a MetaImage cannot keep

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def _oblique_affine() -> np.ndarray:
    """A voxel -> RAS affine of a rotated grid with unequal spacing (ITK keeps only such: orthonormal axes)."""
    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", [20, -10, 95], degrees=True).as_matrix()
    affine[:3, :3] = rotation @ np.diag([0.9, 0.8, 2.5])
    affine[:3, 3] = [10.0, 20.0, -5.0]
    return affine


def _converted(nifti, path):
    """`nifti` written as `path` by ITK itself (its NIfTI reader, its NRRD or MetaImage writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(path))
    return path


@pytest.mark.parametrize("suffix", ITK_SUFFIXES)
def test_itk_files_read_as_the_same_scan_in_nifti(tmp_path, suffix):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(7, 6, 5)).astype(np.float32)
    labels = rng.integers(0, 3, (7, 6, 5)).astype(np.uint8)
    nib.save(nib.Nifti1Image(image, _oblique_affine()), tmp_path / "image.nii.gz")
    nib.save(nib.Nifti1Image(labels, _oblique_affine()), tmp_path / "labels.nii.gz")
    for name, is_label in (("image", False), ("labels", True)):
        expected = load_nifti(tmp_path / f"{name}.nii.gz", is_label=is_label)
        read = load_volume(
            _converted(tmp_path / f"{name}.nii.gz", tmp_path / f"{name}{suffix}"), is_label=is_label
        )
        np.testing.assert_array_equal(read.array, expected.array)
        assert read.array.dtype == expected.array.dtype
        np.testing.assert_allclose(read.affine, expected.affine, atol=1e-5)
        assert read.spacing == pytest.approx(expected.spacing)


def test_the_ras_affine_and_itk_geometry_invert_each_other():
    # ITK's identity direction is LPS: voxel i steps to the patient's left, so RAS x falls
    expected = np.array([[-2.0, 0, 0, -10], [0, -3, 0, -20], [0, 0, 4, 30], [0, 0, 0, 1]])
    np.testing.assert_allclose(itk_affine((1, 0, 0, 0, 1, 0, 0, 0, 1), (2, 3, 4), (10, 20, 30)), expected)
    affine = _oblique_affine()
    direction, spacing, origin = itk_geometry(affine)
    assert spacing == pytest.approx((0.9, 0.8, 2.5))
    np.testing.assert_allclose(itk_affine(direction, spacing, origin), affine, atol=1e-12)


def test_a_vector_nrrd_holds_its_channels_as_a_4d_nifti_does(tmp_path):
    rng = np.random.default_rng(1)
    channels = [rng.normal(size=(6, 5, 4)).astype(np.float32) for _ in range(3)]
    nib.save(nib.Nifti1Image(np.stack(channels, axis=-1), np.diag([0.8, 0.8, 2.0, 1])), tmp_path / "s.nii.gz")
    items = [sitk.GetImageFromArray(np.ascontiguousarray(c.transpose(2, 1, 0))) for c in channels]
    vector = sitk.Compose(items)
    vector.CopyInformation(items[0])
    vector.SetSpacing((0.8, 0.8, 2.0))
    vector.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS identity, as LPS
    sitk.WriteImage(vector, str(tmp_path / "s.nrrd"))
    assert volume_channel_count(tmp_path / "s.nrrd") == 3
    with pytest.raises(VolumeReadError, match=r"--channel k .* 0 <= k < 3"):
        load_volume(tmp_path / "s.nrrd")
    read = load_volume(tmp_path / "s.nrrd", channel=2)
    np.testing.assert_array_equal(read.array, load_nifti(tmp_path / "s.nii.gz", channel=2).array)
    np.testing.assert_array_equal(read.array, channels[2])


def test_a_slicer_segmentation_names_its_segments_and_overlapping_layers_are_refused(tmp_path):
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[1:3, 1:4, 2:5] = 1
    labels[3:5, 2:5, 1:3] = 4
    image = sitk.GetImageFromArray(labels)
    for key, value in {
        "Segment0_Name": "liver",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment1_Name": "left kidney",
        "Segment1_LabelValue": "4",
        "Segment1_Layer": "0",
    }.items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(tmp_path / "case.seg.nrrd"))
    assert slicer_segment_names(read_itk_header(tmp_path / "case.seg.nrrd").metadata) == {
        1: "liver",
        4: "left kidney",
    }
    assert set(np.unique(load_volume(tmp_path / "case.seg.nrrd", is_label=True).array)) == {0, 1, 4}
    assert slicer_segment_names({"space": "left-posterior-superior"}) == {}
    # segments that overlap: Slicer keeps them in layers, one per component
    layered = sitk.Compose([image, image])
    layered.SetMetaData("Segment0_Layer", "0")
    layered.SetMetaData("Segment1_Layer", "1")
    sitk.WriteImage(layered, str(tmp_path / "overlap.seg.nrrd"))
    with pytest.raises(VolumeReadError, match=r"2 layers .* segments overlap.*labelmap"):
        load_volume(tmp_path / "overlap.seg.nrrd", is_label=True)


def test_an_itk_file_without_simpleitk_says_how_to_install_it(tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "s.nii.gz")
    _converted(tmp_path / "s.nii.gz", tmp_path / "s.mha")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(VolumeReadError, match=r'pip install "msa_hf\[medical\]"'):
        load_volume(tmp_path / "s.mha")
    with pytest.raises(VolumeReadError, match="SimpleITK"):
        save_volume(np.zeros((4, 4, 4), np.uint8), np.eye(4), tmp_path / "mask.nrrd")


def test_a_truncated_or_foreign_itk_file_is_refused_by_name(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), tmp_path / "s.nii.gz")
    data = _converted(tmp_path / "s.nii.gz", tmp_path / "s.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeReadError, match=r"cut\.nrrd: cannot read the voxel data"):
        load_volume(tmp_path / "cut.nrrd")
    (tmp_path / "text.mha").write_text("not a header")
    with pytest.raises(VolumeReadError, match=r"text\.mha: not a readable NRRD or MetaImage file"):
        load_volume(tmp_path / "text.mha")


def _ball_scan(tmp_path):
    """A bright ball stored as DICOM-derived files are (LPS voxel order: RAS x and y fall), as NIfTI; the ball
    as display slices, and its file."""
    ball = sphere_volume(shape=(12, 32, 32), centre=(6, 14, 17), radius=4.5)
    canonical = np.transpose(ball, (2, 1, 0))[:, ::-1, :]  # display slices -> RAS voxels
    stored = np.ascontiguousarray(canonical[::-1, ::-1, :])  # LPS voxel order
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    affine[:2, 3] = [31 * 0.8, 31 * 0.8]
    nib.save(
        nib.Nifti1Image(np.where(stored, 900.0, 100.0).astype(np.float32), affine), tmp_path / "s.nii.gz"
    )
    return ball, tmp_path / "s.nii.gz"


@pytest.mark.parametrize(
    ("input_suffix", "output_suffix"),
    [(".nrrd", ".nrrd"), (".mha", ".mha"), (".nrrd", ".nii.gz"), (".nii.gz", ".mha")],
)
def test_a_mask_is_written_on_the_inputs_own_grid_in_the_format_asked(tmp_path, input_suffix, output_suffix):
    ball, nifti = _ball_scan(tmp_path)
    scan = nifti if input_suffix == ".nii.gz" else _converted(nifti, tmp_path / f"s{input_suffix}")
    prompt = Prompt(box=grown_box(ball[6], 0.0), slice=6, propagate=True)
    predict_file(BrightInBoxSam(32), nifti, tmp_path / "reference.nii.gz", [prompt])
    summary = predict_file(BrightInBoxSam(32), scan, tmp_path / f"mask{output_suffix}", [prompt])
    assert summary["masks"][0]["pixels"] == ball.sum()
    written = sitk.ReadImage(str(tmp_path / f"mask{output_suffix}"))
    reference = sitk.ReadImage(str(tmp_path / "reference.nii.gz"))  # on the NIfTI input's grid
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference))
    assert (sitk.GetArrayFromImage(written) == 1).sum() == ball.sum()
    source = sitk.ReadImage(str(scan))
    for geometry in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(written, geometry)(), getattr(source, geometry)(), atol=1e-5)
    assert written.GetPixelID() == sitk.sitkUInt8


def test_prepare_pairs_slicer_and_grand_challenge_names_and_reads_what_nifti_gives(tmp_path):
    files = {}
    for index in range(2):
        files[f"case{index}"] = write_nifti_case(tmp_path / "nifti", f"case{index}", seed=index)
    flat = tmp_path / "itk"
    flat.mkdir()
    # Slicer: a scan and its segmentation; grand-challenge: .mha with a mask suffix
    _converted(tmp_path / "nifti/imagesTr/case0_0000.nii.gz", flat / "case0.nrrd")
    _converted(tmp_path / "nifti/labelsTr/case0.nii.gz", flat / "case0.seg.nrrd")
    _converted(tmp_path / "nifti/imagesTr/case1_0000.nii.gz", flat / "case1.mha")
    _converted(tmp_path / "nifti/labelsTr/case1.nii.gz", flat / "case1_label.mha")
    pairs = find_volume_pairs(flat)
    assert [(p.case_id, p.image.name, p.label.name) for p in pairs] == [
        ("case0", "case0.nrrd", "case0.seg.nrrd"),
        ("case1", "case1.mha", "case1_label.mha"),
    ]
    report = prepare_dataset(flat, tmp_path / "out", split=(1, 0, 0), keep_empty_slices=True)
    assert report.cases == {"train": 2}
    seen = set()
    for row in load_prepared(tmp_path / "out")["train"]:
        image, labels = files[row["case_id"]]
        assert np.array_equal(np.asarray(row["image"]), axial_slices(image)[row["slice"]])
        assert np.array_equal(np.asarray(row["label"]), axial_slices(labels)[row["slice"]])
        seen.add(row["case_id"])
    assert seen == set(files)
    # Slicer's default names in a patient's folder: the segmentation named by its role alone
    patient = tmp_path / "slicer" / "patient7"
    patient.mkdir(parents=True)
    _converted(tmp_path / "nifti/imagesTr/case0_0000.nii.gz", patient / "CT.nrrd")
    _converted(tmp_path / "nifti/labelsTr/case0.nii.gz", patient / "Segmentation.seg.nrrd")
    assert [(p.case_id, p.image.name, p.label.name) for p in find_volume_pairs(tmp_path / "slicer")] == [
        ("patient7", "CT.nrrd", "Segmentation.seg.nrrd")
    ]


def test_predict_a_folder_of_mha_keeps_the_format_and_score_reads_it(tmp_path, capsys):
    for index in range(2):
        write_nifti_case(tmp_path / "nifti", f"case{index}", seed=index)
        for kind, name in (("imagesTr", f"case{index}_0000"), ("labelsTr", f"case{index}")):
            (tmp_path / "mha" / kind).mkdir(parents=True, exist_ok=True)
            _converted(tmp_path / "nifti" / kind / f"{name}.nii.gz", tmp_path / "mha" / kind / f"{name}.mha")
    labels, out = str(tmp_path / "mha" / "labelsTr"), tmp_path / "out"
    assert (
        main(
            ["predict", "tiny", str(tmp_path / "mha" / "imagesTr"), str(out), "--prompts-from-labels", labels]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("*.mha")) == ["case0_0000.mha", "case1_0000.mha"]
    assert main(["score", str(out), labels, "--output-dir", str(out)]) == 0
    rows = list(csv.DictReader((out / "scores.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 4  # two cases, structures 1 and 2
    for row in rows:
        value = int(row["class_name"].removeprefix("class_"))
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{row['case_id']}_0000.mha"))) == value
        reference = sitk.GetArrayFromImage(sitk.ReadImage(f"{labels}/{row['case_id']}.mha")) == value
        assert float(row["dice"]) == pytest.approx(dice(written, reference))


def test_the_demo_opens_an_nrrd_upload_and_gives_its_mask_back_as_nrrd(tmp_path):
    from msa_hf.demo.sessions import DemoSession, VolumeSession

    ball, nifti = _ball_scan(tmp_path)
    scan = _converted(nifti, tmp_path / "s.nrrd")
    session = DemoSession(BrightInBoxSam(32))
    path, done = session.segment_volume([str(scan)], 6, [], list(grown_box(ball[6], 0.0)), propagate=True)
    assert path.endswith(".seg.nrrd"), path  # named as Slicer names a segmentation
    written, source = sitk.ReadImage(path), sitk.ReadImage(str(scan))
    assert (sitk.GetArrayFromImage(written) == 1).sum() == ball.sum()
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(axial_slices(load_volume(path, is_label=True).array) == 1, ball)
    assert slicer_segmentation_names(path) == {1: "segmented structure"}  # Slicer opens it as a segmentation
    volume = VolumeSession(str(scan), session)
    try:
        assert volume.save().endswith("msa_mask.seg.nrrd")
    finally:
        volume.close()


def _slicer_segmentation(path, labels: np.ndarray, names: dict[int, str]) -> None:
    """`labels` `(I, J, K)` written as 3D Slicer writes a segmentation: its segments named in the header."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    image.SetSpacing((0.7, 0.7, 3.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS voxel order, as LPS
    for index, (value, name) in enumerate(sorted(names.items())):
        image.SetMetaData(f"Segment{index}_Name", name)
        image.SetMetaData(f"Segment{index}_LabelValue", str(value))
        image.SetMetaData(f"Segment{index}_Layer", "0")
    sitk.WriteImage(image, str(path))


def test_slicer_segmentations_numbered_differently_are_valued_by_segment_name(tmp_path):
    """Two cases whose segments were added in another order (liver 1 and spleen 2; spleen 1 and liver 2):
    prepare values each by name, names the classes after them and says so; `--structures` picks by name."""
    files = {}
    for index, own in enumerate(({1: "liver", 2: "spleen"}, {1: "spleen", 2: "liver"})):
        image, labels = write_nifti_case(tmp_path / "nifti", f"case{index}", seed=index)
        _converted(
            tmp_path / f"nifti/imagesTr/case{index}_0000.nii.gz", tmp_path / "src" / f"case{index}.nrrd"
        )
        # write_nifti_case draws structure 1 and 2; here they are the liver and the spleen
        by_name = {"liver": labels == 1, "spleen": labels == 2}
        stored = np.zeros_like(labels)
        for value, name in own.items():
            stored[by_name[name]] = value
        _slicer_segmentation(tmp_path / "src" / f"case{index}.seg.nrrd", stored, own)
        files[f"case{index}"] = (image, labels)
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", split=(1, 0, 0), keep_empty_slices=True)
    assert report.class_names == {1: "liver", 2: "spleen"}
    assert any("number their segments differently" in warning for warning in report.warnings)
    for row in load_prepared(tmp_path / "out")["train"]:
        _, labels = files[row["case_id"]]
        assert np.array_equal(np.asarray(row["label"]), axial_slices(labels)[row["slice"]])
    report = prepare_dataset(
        tmp_path / "src", tmp_path / "spleen", split=(1, 0, 0), keep_empty_slices=True, structures=["spleen"]
    )
    assert report.class_names == {1: "spleen"}
    for row in load_prepared(tmp_path / "spleen")["train"]:
        _, labels = files[row["case_id"]]
        assert np.array_equal(
            np.asarray(row["label"]), axial_slices((labels == 2).astype(np.uint8))[row["slice"]]
        )


def test_structure_files_and_probabilities_of_an_nrrd_input_are_nrrd_on_its_grid(tmp_path):
    """Two prompts on an NRRD scan: `--structure-files` writes `<name>.nrrd` each, the probabilities a vector
    NRRD of two maps, both equal to what the NIfTI scan gives, as ITK reads them; score reads the folder."""
    ball, nifti = _ball_scan(tmp_path)
    scan = _converted(nifti, tmp_path / "s.nrrd")
    box = grown_box(ball[6], 0.0)
    prompts = [Prompt(box=box, slice=6, name="ball"), Prompt(box=box, slice=5, name="cap")]
    predict_file(
        BrightInBoxSam(32),
        nifti,
        tmp_path / "ref.nii.gz",
        prompts,
        probabilities_path=tmp_path / "ref_p.nii.gz",
    )
    predict_file(
        BrightInBoxSam(32),
        scan,
        tmp_path / "pred" / "s",
        prompts,
        structure_files=True,
        probabilities_path=tmp_path / "p.nrrd",
    )
    assert sorted(p.name for p in (tmp_path / "pred" / "s").iterdir()) == ["ball.nrrd", "cap.nrrd"]
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ref.nii.gz")))
    for value, name in ((1, "ball"), (2, "cap")):
        written = sitk.ReadImage(str(tmp_path / "pred" / "s" / f"{name}.nrrd"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written) == 1, reference == value)
        np.testing.assert_allclose(written.GetOrigin(), sitk.ReadImage(str(scan)).GetOrigin(), atol=1e-5)
    probabilities = sitk.ReadImage(str(tmp_path / "p.nrrd"))
    assert probabilities.GetNumberOfComponentsPerPixel() == 2
    expected = np.asarray(nib.load(tmp_path / "ref_p.nii.gz").dataobj)  # (I, J, K, 2) on the same voxel order
    np.testing.assert_allclose(
        sitk.GetArrayFromImage(probabilities).transpose(2, 1, 0, 3), expected, atol=1e-6
    )
    labels = tmp_path / "labels"
    labels.mkdir()
    _converted(tmp_path / "ref.nii.gz", labels / "s.nrrd")
    (labels / "labels.json").write_text('{"1": "ball", "2": "cap"}')
    assert main(["score", str(tmp_path / "pred"), str(labels), "--output-dir", str(tmp_path / "scores")]) == 0
    rows = list(csv.DictReader((tmp_path / "scores" / "scores.csv").read_text(encoding="utf-8").splitlines()))
    assert [float(row["dice"]) for row in rows] == [1.0, 1.0]


def test_predict_from_a_slicer_segmentation_names_the_structures_after_its_segments(tmp_path, serve_stand_in):
    """Each structure file is named after its segment and holds that segment: a box-filling stand-in prompted
    with each box-shaped structure's box gives the structure back."""
    from msa_hf.testing import BoxFillSam

    _, labels = write_nifti_case(tmp_path / "nifti", "case0")
    _converted(tmp_path / "nifti/imagesTr/case0_0000.nii.gz", tmp_path / "src/images/case0.nrrd")
    (tmp_path / "src/labels").mkdir()
    stored = np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.uint8)  # spleen 1, liver 2
    _slicer_segmentation(tmp_path / "src/labels/case0.seg.nrrd", stored, {1: "spleen", 2: "liver"})
    serve_stand_in(BoxFillSam(24))
    out = tmp_path / "out"
    assert main(["predict", "m", str(tmp_path / "src/images"), str(out), "--prompts-from-labels",
                 str(tmp_path / "src/labels"), "--structure-files"]) == 0  # fmt: skip
    assert sorted(p.name for p in (out / "case0").iterdir()) == ["liver.nrrd", "spleen.nrrd"]
    for name, value in (("liver", 2), ("spleen", 1)):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case0" / f"{name}.nrrd")))
        np.testing.assert_array_equal(written == 1, stored.transpose(2, 1, 0) == value)
