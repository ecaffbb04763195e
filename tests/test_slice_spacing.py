"""A depth-branch model sees volumes at its training slice spacing: the resampling, its way back, predict."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pytest

from msa_hf import SamAdapterConfig, SamAdapterModel
from msa_hf.data import axial_slices, load_nifti
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.inference.slice_spacing import SliceResampling, interpolate_slices
from msa_hf.inference.volume_predictor import grown_box
from msa_hf.processing.processor import MsaProcessor
from msa_hf.testing import (
    BrightInBoxSam,
    randomize_adapter_weights,
    randomize_weights,
    sphere_volume,
    tiny_sam_kwargs,
    write_nifti_case,
)


def test_interpolate_slices_is_linear_between_neighbours():
    volume = np.stack([np.full((2, 3), v, np.int16) for v in (0, 10, 20)])
    got = interpolate_slices(volume, np.array([0.0, 0.5, 1.25, 2.0, 2.7]))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:, 0, 0], [0.0, 5.0, 12.5, 20.0, 20.0])  # past the end: the last slice
    assert (got == got[:, :1, :1]).all()


def test_the_grids_of_a_resampling():
    # 10 slices 5 mm apart (45 mm) on a 2 mm grid: 23 slices from the first input slice to 44 mm
    resampling = SliceResampling(10, 5.0, 2.0)
    assert resampling.model_count == 23
    np.testing.assert_allclose(resampling.model_positions()[:4], [0.0, 0.4, 0.8, 1.2])
    np.testing.assert_allclose(resampling.input_positions()[:3], [0.0, 2.5, 5.0])
    assert [resampling.to_model_slice(i) for i in (0, 1, 3, 9)] == [0, 3, 8, 22]  # 2.5 -> 3, 22.5 -> 22 (end)
    assert resampling.describe() == "10 slices at 5 mm resampled to 23 at the model's 2 mm"
    # thinner input: every other slice of a 1 mm scan is a model slice
    assert SliceResampling(9, 1.0, 2.0).model_count == 5
    assert SliceResampling(10, 1.0, 2.0).model_count == 5  # 9 mm: the last model slice at 8 mm


def test_no_resampling_where_none_is_needed():
    assert SliceResampling.between(20, 2.0, None) is None  # a model without a recorded spacing
    assert SliceResampling.between(1, 5.0, 2.0) is None  # one slice
    assert SliceResampling.between(20, 2.08, 2.0) is None  # within 5%
    assert SliceResampling.between(20, 2.2, 2.0) == SliceResampling(20, 2.2, 2.0)
    with pytest.raises(ValueError, match="positive number of mm"):
        SliceResampling(20, 0.0, 2.0)


def test_there_and_back_keeps_what_lies_on_both_grids():
    ramp = np.arange(7, dtype=np.float32)[:, None, None] * np.ones((7, 3, 4), np.float32)  # 7 slices, 4 mm
    resampling = SliceResampling(7, 4.0, 2.0)
    on_model = resampling.image_to_model(ramp)
    assert on_model.shape == (13, 3, 4)
    np.testing.assert_allclose(on_model[:, 0, 0], np.arange(13) / 2)  # linear in z: exact
    np.testing.assert_allclose(resampling.probabilities_to_input(on_model), ramp)
    with pytest.raises(ValueError, match=r"\(13, H, W\) slices on the model grid"):
        resampling.probabilities_to_input(ramp)


def test_a_propagation_comes_back_by_its_maps_with_each_seed_keeping_its_mask():
    resampling = SliceResampling(5, 1.0, 2.0)  # input slices 0-4 at model positions 0, 0.5, 1, 1.5, 2
    walks = np.zeros((3, 1, 2), np.float32)
    walks[2] = 0.8  # the walk reached model slice 2 (input slice 4)
    seed_mask = np.array([[True, False]])
    # input slices 1 and 2 share model slice 1: the later seed's map is the one placed there
    seeds = {
        1: (np.full((1, 2), 0.3, np.float32), seed_mask),
        2: (np.full((1, 2), 0.9, np.float32), seed_mask),
    }
    masks, back = resampling.propagation_to_input(walks, seeds)
    np.testing.assert_allclose(back[:, 0, 1], [0.0, 0.45, 0.9, 0.85, 0.8])
    np.testing.assert_array_equal(masks[:, 0, 1], [False, False, False, True, True])  # seeds keep their masks
    np.testing.assert_array_equal(masks[:, 0, 0], [False, True, True, True, True])


def test_the_processor_records_the_slice_spacing(tmp_path):
    MsaProcessor(64, 32, slice_spacing=2.5).save_pretrained(tmp_path / "depth")
    section = json.loads((tmp_path / "depth" / "processor_config.json").read_text())["msa_processing"]
    assert section["slice_spacing"] == 2.5
    assert MsaProcessor.from_pretrained(tmp_path / "depth").slice_spacing == 2.5
    MsaProcessor(64, 32).save_pretrained(tmp_path / "flat")
    assert (
        "slice_spacing"
        not in json.loads((tmp_path / "flat" / "processor_config.json").read_text())["msa_processing"]
    )
    assert MsaProcessor.from_pretrained(tmp_path / "flat").slice_spacing is None
    for bad in (0, -1.0, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="slice_spacing"):
            MsaProcessor(64, 32, slice_spacing=bad)


def save_display_slices(slices: np.ndarray, spacing: float, path) -> None:
    """Write `(N, H, W)` display slices as a RAS NIfTI whose slices lie `spacing` mm apart."""
    canonical = np.ascontiguousarray(np.transpose(slices, (2, 1, 0))[:, ::-1, :])
    nib.save(nib.Nifti1Image(canonical.astype(np.float32), np.diag([1.0, 1.0, spacing, 1.0])), path)
    assert np.array_equal(axial_slices(load_nifti(path).array), slices.astype(np.float32))


def read_display(path) -> np.ndarray:
    return axial_slices(np.asarray(nib.load(path).dataobj))


def depth_model() -> SamAdapterModel:
    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), use_depth_branch=True, num_slices=4)).eval()
    randomize_weights(model, seed=1)
    randomize_adapter_weights(model, seed=2)
    return model


def test_a_thick_scan_gets_the_masks_of_its_model_grid_version(tmp_path):
    """4 mm slices for a model of 2 mm: input slice i is model slice 2i, so its masks and probabilities are those
    of the same volume written at 2 mm and predicted as it is."""
    rng = np.random.default_rng(0)
    thick = rng.uniform(100, 900, (8, 32, 32)).astype(np.float32)
    save_display_slices(thick, 4.0, tmp_path / "thick.nii.gz")
    fine = SliceResampling(8, 4.0, 2.0).image_to_model(thick)  # 15 slices, every other one interpolated
    save_display_slices(fine, 2.0, tmp_path / "fine.nii.gz")
    model = depth_model()
    prompts = [Prompt(points=[[12, 15]], labels=[1], slice=3), Prompt(box=[4, 6, 20, 25], slice=5)]
    on_fine = [Prompt(points=[[12, 15]], labels=[1], slice=6), Prompt(box=[4, 6, 20, 25], slice=10)]
    summary = predict_file(
        model, tmp_path / "thick.nii.gz", tmp_path / "thick_mask.nii.gz", prompts,
        probabilities_path=tmp_path / "thick_p.nii.gz", slice_spacing=2.0,
    )  # fmt: skip
    assert summary["resampled"] == "8 slices at 4 mm resampled to 15 at the model's 2 mm"
    assert [m["slice"] for m in summary["masks"]] == [3, 5]  # the input's own slices
    for mask in summary["masks"]:  # 1 x 1 x 4 mm voxels
        assert mask["volume_ml"] == round(mask["pixels"] * 0.004, 4)
    predict_file(
        model, tmp_path / "fine.nii.gz", tmp_path / "fine_mask.nii.gz", on_fine,
        probabilities_path=tmp_path / "fine_p.nii.gz", slice_spacing=2.0,
    )  # fmt: skip
    thick_mask, fine_mask = (
        read_display(tmp_path / "thick_mask.nii.gz"),
        read_display(tmp_path / "fine_mask.nii.gz"),
    )
    assert fine_mask.any()
    np.testing.assert_array_equal(thick_mask, fine_mask[::2])
    thick_p = np.moveaxis(np.asarray(nib.load(tmp_path / "thick_p.nii.gz").dataobj), -1, 0)
    fine_p = np.moveaxis(np.asarray(nib.load(tmp_path / "fine_p.nii.gz").dataobj), -1, 0)
    for channel in range(2):
        np.testing.assert_allclose(
            axial_slices(thick_p[channel]), axial_slices(fine_p[channel])[::2], atol=1e-6
        )
    # the depth branch saw other windows without the resampling: the masks are not the same
    predict_file(
        model, tmp_path / "thick.nii.gz", tmp_path / "as_is.nii.gz", prompts,
        probabilities_path=tmp_path / "as_is_p.nii.gz",
    )  # fmt: skip
    as_is_p = np.asarray(nib.load(tmp_path / "as_is_p.nii.gz").dataobj)
    assert np.abs(as_is_p - np.asarray(nib.load(tmp_path / "thick_p.nii.gz").dataobj)).max() > 1e-3


def test_a_spacing_within_tolerance_is_used_as_it_is(tmp_path):
    rng = np.random.default_rng(1)
    save_display_slices(rng.uniform(100, 900, (6, 32, 32)), 2.05, tmp_path / "scan.nii.gz")
    model = depth_model()
    prompt = [Prompt(box=[4, 6, 20, 25], slice=2)]
    near = predict_file(model, tmp_path / "scan.nii.gz", tmp_path / "a.nii.gz", prompt, slice_spacing=2.0)
    predict_file(model, tmp_path / "scan.nii.gz", tmp_path / "b.nii.gz", prompt)
    assert "resampled" not in near
    np.testing.assert_array_equal(read_display(tmp_path / "a.nii.gz"), read_display(tmp_path / "b.nii.gz"))


def test_a_thin_scan_propagates_on_the_model_grid_and_interpolates_back(tmp_path):
    """1 mm slices for a model of 2 mm: even input slices are model slices, odd ones lie halfway and take the
    mean of their neighbours' probabilities; the prompted slice keeps its own mask."""
    ball = sphere_volume(shape=(17, 32, 32), centre=(8, 15, 17), radius=7.0)
    thin = np.where(ball, 900.0, 100.0)
    save_display_slices(thin, 1.0, tmp_path / "thin.nii.gz")
    save_display_slices(thin[::2], 2.0, tmp_path / "model_grid.nii.gz")
    model = BrightInBoxSam(32)
    seed = 7  # an odd slice: decoded on model slice 4 (input slice 8), its own mask from there
    summary = predict_file(
        model, tmp_path / "thin.nii.gz", tmp_path / "thin_mask.nii.gz",
        [Prompt(box=grown_box(ball[seed], 0.0), slice=seed, propagate=True)],
        probabilities_path=tmp_path / "thin_p.nii.gz", slice_spacing=2.0,
    )  # fmt: skip
    predict_file(
        model, tmp_path / "model_grid.nii.gz", tmp_path / "grid_mask.nii.gz",
        [Prompt(box=grown_box(ball[seed], 0.0), slice=4, propagate=True)],
        probabilities_path=tmp_path / "grid_p.nii.gz", slice_spacing=2.0,
    )  # fmt: skip
    grid_p = read_display(tmp_path / "grid_p.nii.gz")  # model slice 4's map: the seed's own prediction
    grid_mask = read_display(tmp_path / "grid_mask.nii.gz") == 1
    expected_p = np.zeros(thin.shape, np.float32)
    expected_p[::2] = grid_p
    expected_p[1::2] = (grid_p[:-1] + grid_p[1:]) / 2
    thin_p = read_display(tmp_path / "thin_p.nii.gz")
    thin_mask = read_display(tmp_path / "thin_mask.nii.gz") == 1
    others = [z for z in range(17) if z != seed]
    np.testing.assert_allclose(thin_p[others], expected_p[others], atol=1e-6)
    clear = np.abs(expected_p - 0.5) > 1e-4  # a mean of 0.5 exactly is the threshold: either side is right
    clear[seed] = False
    np.testing.assert_array_equal(thin_mask[clear], expected_p[clear] > 0.5)
    # the prompted slice: decoded on the model slice nearest to it (input slice 8's), its mask and map kept
    np.testing.assert_array_equal(thin_mask[seed], grid_mask[4])
    np.testing.assert_allclose(thin_p[seed], grid_p[4], atol=1e-6)
    # the propagation ran: the ball's slices are covered on the input's grid, and the summary says so
    present = np.flatnonzero(thin_mask.any(axis=(1, 2)))
    assert summary["masks"][0]["slices"] == [int(present.min()), int(present.max())]
    assert summary["masks"][0]["pixels"] == int(thin_mask.sum())
    assert present.min() <= 2 and present.max() >= 14
    # where the ball is, the resampled prediction finds it as well as the model-grid one
    dice = 2 * (thin_mask & ball).sum() / (thin_mask.sum() + ball.sum())
    assert dice > 0.9


def test_training_records_the_median_slice_spacing_of_its_cases(tmp_path, caplog):
    from msa_hf.data.prepare import prepare_dataset
    from msa_hf.training.config import TrainConfig
    from msa_hf.training.datasets import training_slice_spacing

    source = tmp_path / "source"
    spacings = [1.0, 2.0, 2.0, 2.5, 5.0, 2.0, 2.0, 2.0]
    for index, spacing in enumerate(spacings):
        write_nifti_case(source, f"c{index}", hu=False, affine=np.diag([1.0, 1.0, spacing, 1.0]))
    prepare_dataset(source, tmp_path / "prepared", split=(0.75, 0.125, 0.125), modality="MR")
    from msa_hf.data import load_prepared

    train = load_prepared(tmp_path / "prepared")["train"]
    by_case = {case: spacing[2] for case, spacing in zip(train["case_id"], train["spacing"], strict=True)}
    config = TrainConfig(dataset=str(tmp_path / "prepared"), use_depth_branch=True)
    with caplog.at_level(logging.WARNING):
        recorded = training_slice_spacing(config)
    assert recorded == pytest.approx(float(np.median(list(by_case.values()))))
    spread = max(by_case.values()) > 1.5 * recorded or min(by_case.values()) < recorded / 1.5
    assert ("--target-spacing" in caplog.text) == spread
    assert training_slice_spacing(TrainConfig(dataset=str(tmp_path / "prepared"))) is None  # 2-D: not used


def test_predict_resamples_for_a_model_folder_that_records_a_spacing(tmp_path, capsys):
    from msa_hf.cli import main as cli

    model = depth_model()
    model.save_pretrained(tmp_path / "model")
    MsaProcessor.for_model(model, slice_spacing=2.0).save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(2)
    save_display_slices(rng.uniform(100, 900, (7, 32, 32)), 4.0, tmp_path / "scan.nii.gz")
    prompt = ["--slice", "3", "--box", "4", "6", "20", "25"]
    assert (
        cli(
            [
                "predict",
                str(tmp_path / "model"),
                str(tmp_path / "scan.nii.gz"),
                str(tmp_path / "cli.nii.gz"),
                *prompt,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "7 slices at 4 mm resampled to 13 at the model's 2 mm" in printed
    voxels = int((read_display(tmp_path / "cli.nii.gz") == 1).sum())
    assert f"label 1 slice 3: {voxels} voxels, {round(voxels * 0.004, 4):g} mL, predicted IoU" in printed
    loaded = SamAdapterModel.from_pretrained(tmp_path / "model").eval()
    box = [Prompt(box=[4, 6, 20, 25], slice=3)]
    predict_file(loaded, tmp_path / "scan.nii.gz", tmp_path / "api.nii.gz", box, slice_spacing=2.0)
    predict_file(loaded, tmp_path / "scan.nii.gz", tmp_path / "as_is.nii.gz", box)
    np.testing.assert_array_equal(
        read_display(tmp_path / "cli.nii.gz"), read_display(tmp_path / "api.nii.gz")
    )
    assert cli(["predict", str(tmp_path / "model"), str(tmp_path / "scan.nii.gz"), str(tmp_path / "off.nii.gz"),
                *prompt, "--no-resample-slices"]) == 0  # fmt: skip
    assert "resampled" not in capsys.readouterr().out
    np.testing.assert_array_equal(
        read_display(tmp_path / "off.nii.gz"), read_display(tmp_path / "as_is.nii.gz")
    )
    assert not np.array_equal(read_display(tmp_path / "api.nii.gz"), read_display(tmp_path / "as_is.nii.gz"))
    # many inputs: the same resampling for each volume, said once
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            [{"input": str(tmp_path / "scan.nii.gz"), "prompts": [{"box": [4, 6, 20, 25], "slice": 3}]}]
        )
    )
    assert cli(["predict", str(tmp_path / "model"), str(manifest), str(tmp_path / "out")]) == 0
    assert "trained on slices 2 mm apart" in capsys.readouterr().out
    written = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert len(written) == 1
    np.testing.assert_array_equal(read_display(written[0]), read_display(tmp_path / "api.nii.gz"))


def test_the_demo_resamples_as_predict_does(tmp_path):
    from msa_hf.demo.prompt_state import BOX, add_prompt, empty_prompts
    from msa_hf.demo.sessions import DemoSession, VolumeSession

    ball = sphere_volume(shape=(17, 32, 32), centre=(8, 15, 17), radius=7.0)
    save_display_slices(np.where(ball, 900.0, 100.0), 1.0, tmp_path / "thin.nii.gz")
    seed = 7
    x0, y0, x1, y1 = grown_box(ball[seed], 0.0)
    predict_file(
        BrightInBoxSam(32), tmp_path / "thin.nii.gz", tmp_path / "predicted.nii.gz",
        [Prompt(box=[x0, y0, x1, y1], slice=seed, propagate=True)], slice_spacing=2.0,
    )  # fmt: skip
    volume = VolumeSession(str(tmp_path / "thin.nii.gz"), DemoSession(BrightInBoxSam(32), slice_spacing=2.0))
    assert volume.sliced.resampling == SliceResampling(17, 1.0, 2.0) and len(volume.sliced.model_slices) == 9
    assert len(volume.slices) == 17  # the visitor sees and prompts the volume's own slices
    corner = add_prompt(empty_prompts(), x0, y0, BOX, ball.shape[1:])
    volume.set_prompts(seed, add_prompt(corner, x1, y1, BOX, ball.shape[1:]))
    answer = volume.masks[seed].copy()  # decoded on the model slice nearest to it: input slice 8's
    in_box = np.zeros(ball.shape[1:], bool)
    in_box[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
    np.testing.assert_array_equal(answer, ball[8] & in_box)
    message = volume.propagate(seed)
    np.testing.assert_array_equal(volume.masks, read_display(tmp_path / "predicted.nii.gz") == 1)
    present = np.flatnonzero(volume.masks.any(axis=(1, 2)))
    assert f"to slices {present.min()}-{present.max()}" in message and "on the model's grid" in message
    voxels = int(volume.masks.sum())  # 1 mm voxels: a thousand to the mL
    assert f"({voxels} voxels, {voxels / 1000:g} mL)" in message
    # a correction: a slice whose prompt finds nothing stays empty, and no walk passes it; the seed keeps its mask
    corner = add_prompt(empty_prompts(), 0, 0, BOX, ball.shape[1:])
    volume.set_prompts(10, add_prompt(corner, 3, 3, BOX, ball.shape[1:]))
    assert not volume.masks[10].any()
    volume.propagate(seed)
    assert not volume.masks[10:].any() and volume.masks[2:9].any(axis=(1, 2)).all()
    np.testing.assert_array_equal(volume.masks[seed], answer)
    # a slice range holds the result, counted on the volume's slices
    message = volume.propagate(seed, slice_range=(5, 9))
    assert not volume.masks[:5].any() and not volume.masks[10:].any()
    present = np.flatnonzero(volume.masks.any(axis=(1, 2)))
    assert f"to slices {present.min()}-{present.max()}" in message and present.min() >= 5


def write_volume_case(source, name: str, image: np.ndarray, label: np.ndarray, slice_spacing: float) -> None:
    """A Decathlon-style case from `(N, H, W)` display slices `slice_spacing` mm apart (1 mm pixels)."""
    (source / "imagesTr").mkdir(parents=True, exist_ok=True)
    (source / "labelsTr").mkdir(parents=True, exist_ok=True)
    save_display_slices(image, slice_spacing, source / "imagesTr" / f"{name}_0000.nii.gz")
    canonical = np.ascontiguousarray(np.transpose(label, (2, 1, 0))[:, ::-1, :]).astype(np.uint8)
    nib.save(
        nib.Nifti1Image(canonical, np.diag([1.0, 1.0, slice_spacing, 1.0])),
        source / "labelsTr" / f"{name}.nii.gz",
    )


def test_a_resampled_case_holds_the_models_slices_in_its_stored_dtype():
    from msa_hf.evaluation.resampled_cases import ResampledCase

    images = [np.full((2, 3), v, np.uint8) for v in (0, 11, 200)]
    labels = [np.full((2, 3), v, np.uint8) for v in (0, 1, 2)]
    rows = {
        "image": images, "label": labels, "labels_present": [[], [1], [2]], "case_id": ["c"] * 3,
        "modality": ["other"] * 3,
    }  # fmt: skip
    case = ResampledCase.from_rows(rows, SliceResampling(3, 2.0, 1.0))  # 5 model slices at 0, .5, 1, 1.5, 2
    assert case.images.dtype == np.uint8  # its dtype picks the /255 intensity rule, as the stored rows'
    assert case.images[:, 0, 0].tolist() == [0, 6, 11, 106, 200]  # 5.5 and 105.5 rounded half to even
    assert case.labels[:, 0, 0].tolist() == [0, 1, 1, 2, 2]  # the nearest input slice's, halves up
    assert len(case) == 5 and case["slice"] == [0, 1, 2, 3, 4] and case["case_id"] == ["c"] * 5
    assert case["labels_present"] == [[], [1], [1], [2], [2]]
    picked = case[[3, 0]]
    assert (
        picked["label"][0][0, 0] == 2
        and picked["image"][1][0, 0] == 0
        and picked["modality"] == ["other"] * 2
    )
    with pytest.raises(KeyError, match="no column 'spacing'"):
        case["spacing"]
    # votes back on the input's slices: +1 on model slices 0-2, -1 after; input slice 1 is model slice 2
    votes = np.array([1, 1, 1, -1, -1], np.float32)[:, None, None] * np.ones((5, 2, 3))
    assert case.votes_to_input(votes)[:, 0, 0].tolist() == [True, True, False]


def test_evaluate_scores_a_thin_case_on_the_models_grid(tmp_path):
    """1 mm slices for a model of 2 mm, with a stand-in that fills every clicked slice: the model slices are the
    even input slices, clicked where their labels show the structure, and the odd slices take the mean of
    their neighbours' votes. A structure only on an odd slice lies on no model slice: it is scored, as missed."""
    from msa_hf.data.prepare import prepare_dataset
    from msa_hf.evaluation.protocols import evaluate_volumes
    from msa_hf.testing import FillPromptedSlices

    image = np.random.default_rng(0).uniform(100, 900, (16, 32, 32)).astype(np.float32)
    label = np.zeros((16, 32, 32), np.uint8)
    label[3:10, 8:20, 6:16] = 1  # input slices 3-9: model slices 2-4 (input 4, 6, 8) show it
    label[5, 24:28, 20:26] = 2  # input slice 5 only, halfway between model slices 2 and 3
    write_volume_case(tmp_path / "source", "thin", image, label, 1.0)
    prepare_dataset(
        tmp_path / "source",
        tmp_path / "prepared",
        split=(0.0, 0.0, 1.0),
        modality="MR",
        keep_empty_slices=True,
    )

    model = FillPromptedSlices(32, 4)  # 8 model slices: two windows of 4, no overlap
    points1 = {"protocols": ("volume_points1",)}  # the stand-in answers windows, not a predictor's slices
    report = evaluate_volumes(
        model, tmp_path / "prepared", "test", slice_spacing=2.0, output_dir=tmp_path / "out", **points1
    )
    assert report["resampled"] == {"thin": "16 slices at 1 mm resampled to 8 at the model's 2 mm"}
    dice = {score.class_name: score.dice for score in report["scores"]["volume_points1"]}
    # filled: input slices 4-8 (model slices 2-4 and the odd ones between them); 3 and 9 get half a vote
    assert dice["class_1"] == pytest.approx(2 * 5 * 120 / (5 * 1024 + 7 * 120))
    assert dice["class_2"] == 0.0
    assert report["notes"] == ["1 of 1 cases have slices 1 mm apart, and the model's depth branch was trained on "
                               "2 mm: evaluate resampled them along the slice axis to 2 mm, as msa-hf predict does, "
                               "and scored the masks on each case's own slices."]  # fmt: skip
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["resampled"] == report["resampled"]
    assert f"Note: {report['notes'][0]}" in (tmp_path / "out" / "results.md").read_text()

    as_is = evaluate_volumes(
        model, tmp_path / "prepared", "test", slice_spacing=2.0, resample_slices=False, **points1
    )
    dice = {score.class_name: score.dice for score in as_is["scores"]["volume_points1"]}
    assert dice["class_1"] == pytest.approx(2 * 7 * 120 / (7 * 1024 + 7 * 120))  # its 7 clicked slices filled
    assert dice["class_2"] == pytest.approx(2 * 24 / (1024 + 24))
    assert as_is["resampled"] == {} and as_is["notes"] == [
        "1 of 1 cases have slices 1 mm apart, and the model's depth branch was trained on 2 mm: evaluate showed "
        "it their slices as the dataset holds them (--no-resample-slices), where msa-hf predict resamples them "
        "to 2 mm."
    ]
    on_grid = evaluate_volumes(
        model, tmp_path / "prepared", "test", slice_spacing=1.04, **points1
    )  # within 5%
    assert on_grid["resampled"] == {} and on_grid["notes"] == [] and on_grid["tables"] == as_is["tables"]


def test_evaluate_shows_a_thick_case_to_the_model_as_its_model_grid_version(tmp_path, monkeypatch, capsys):
    """4 mm slices for a real depth model of 2 mm: the masks scored are those of the same case written at 2 mm
    (images interpolated, each slice labelled as its nearest 4 mm slice) and evaluated as it is, on the
    4 mm case's slices; the command line does the same, and --no-resample-slices does not."""
    from msa_hf.cli import main as cli
    from msa_hf.data import load_prepared
    from msa_hf.data.prepare import prepare_dataset
    from msa_hf.evaluation import volume_evaluation
    from msa_hf.evaluation.protocols import evaluate_volumes
    from msa_hf.evaluation.resampled_cases import ResampledCase

    rng = np.random.default_rng(3)
    resampling = SliceResampling(8, 4.0, 2.0)
    for name in ("a", "b"):
        thick = rng.uniform(100, 900, (8, 32, 32)).astype(np.float32)
        label = np.zeros((8, 32, 32), np.uint8)
        label[2:6, 6:18, 8:22] = 1
        label[3:8, 20:28, 4:12] = 2
        thick[label > 0] += 600.0
        write_volume_case(tmp_path / "thick", name, thick, label, 4.0)
        fine = resampling.image_to_model(thick)
        write_volume_case(tmp_path / "fine", name, fine, label[resampling.nearest_input_slices()], 2.0)
    for grid in ("thick", "fine"):
        prepare_dataset(
            tmp_path / grid,
            tmp_path / f"{grid}_prepared",
            split=(0.0, 0.0, 1.0),
            modality="MR",
            keep_empty_slices=True,
        )
    # the premise: the 2 mm dataset holds exactly what evaluation makes of the 4 mm one
    thick_rows, fine_rows = (
        load_prepared(tmp_path / f"{grid}_prepared")["test"] for grid in ("thick", "fine")
    )
    case = ResampledCase.from_rows(thick_rows.filter(lambda row: row["case_id"] == "a"), resampling)
    fine_a = fine_rows.filter(lambda row: row["case_id"] == "a")
    np.testing.assert_array_equal(case.images, np.stack([np.asarray(i) for i in fine_a["image"]]))
    np.testing.assert_array_equal(case.labels, np.stack([np.asarray(i) for i in fine_a["label"]]))

    scored: dict[tuple[str, str], np.ndarray] = {}
    real_case_score = volume_evaluation.case_score

    def keep_masks(case_id, class_name, prediction, target, spacing):
        scored[(case_id, class_name)] = prediction
        return real_case_score(case_id, class_name, prediction, target, spacing)

    monkeypatch.setattr(volume_evaluation, "case_score", keep_masks)
    model = depth_model()
    points1 = {"protocols": ("volume_points1",)}
    evaluate_volumes(model, tmp_path / "fine_prepared", "test", slice_spacing=2.0, **points1)
    fine_masks, scored = dict(scored), {}
    evaluate_volumes(model, tmp_path / "thick_prepared", "test", slice_spacing=2.0, **points1)
    assert sorted(scored) == sorted(fine_masks) and len(scored) == 4
    assert any(mask.any() for mask in scored.values())
    for key, mask in scored.items():  # input slice i is model slice 2i
        np.testing.assert_array_equal(mask, fine_masks[key][::2])
    monkeypatch.setattr(volume_evaluation, "case_score", real_case_score)
    report = evaluate_volumes(model, tmp_path / "thick_prepared", "test", slice_spacing=2.0, **points1)

    model.save_pretrained(tmp_path / "model")
    MsaProcessor.for_model(model, slice_spacing=2.0).save_pretrained(tmp_path / "model")
    assert cli(["evaluate", str(tmp_path / "model"), "--dataset", str(tmp_path / "thick_prepared"),
                "--output-dir", str(tmp_path / "cli")]) == 0  # fmt: skip
    assert "evaluate resampled them along the slice axis to 2 mm" in capsys.readouterr().out
    clicked = json.loads((tmp_path / "cli" / "results.json").read_text())["tables"]["volume_points1"]
    assert clicked == report["tables"]["volume_points1"]
    as_is = evaluate_volumes(
        model, tmp_path / "thick_prepared", "test", slice_spacing=2.0, resample_slices=False
    )
    assert cli(["evaluate", str(tmp_path / "model"), "--dataset", str(tmp_path / "thick_prepared"),
                "--output-dir", str(tmp_path / "cli_as_is"), "--no-resample-slices"]) == 0  # fmt: skip
    assert "(--no-resample-slices)" in capsys.readouterr().out
    clicked = json.loads((tmp_path / "cli_as_is" / "results.json").read_text())["tables"]["volume_points1"]
    assert clicked == as_is["tables"]["volume_points1"]
    assert as_is["tables"] != report["tables"]  # the depth branch saw other windows
