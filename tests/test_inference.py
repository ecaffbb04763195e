"""msa-hf predict: masks in the input's geometry, prompts in its pixel coordinates, bad prompts refused."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from msa_hf.data import axial_slices, load_nifti
from msa_hf.inference.predictor import Prompt, SegmentationPredictor, predict_file, read_prompts
from msa_hf.testing import SCRAMBLED_AFFINE, BoxFillSam


def test_box_prompt_on_a_png_comes_back_at_the_image_size(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (40, 70), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "scan.png")
    summary = predict_file(
        BoxFillSam(64), tmp_path / "scan.png", tmp_path / "mask.png", [Prompt(box=[10, 5, 29, 19])]
    )
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (40, 70) and summary["masks"][0]["pixels"] == int((mask == 1).sum())
    rows, cols = np.nonzero(mask)
    # the box survives the trip to the 64 px model frame and back to within a pixel
    assert (
        abs(cols.min() - 10) <= 1
        and abs(cols.max() - 29) <= 1
        and abs(rows.min() - 5) <= 1
        and abs(rows.max() - 19) <= 1
    )


def test_nifti_prediction_keeps_the_input_affine_and_voxel_order(tmp_path):
    data = np.random.default_rng(0).normal(100, 5, (20, 12, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
    display = axial_slices(load_nifti(tmp_path / "scan.nii.gz").array)  # (12, 20, 16) slices users see
    assert display.shape == (12, 20, 16)
    prompts = [Prompt(box=[3, 4, 9, 12], slice=5), Prompt(points=[[12, 15]], slice=7)]
    predict_file(BoxFillSam(32), tmp_path / "scan.nii.gz", tmp_path / "mask.nii.gz", prompts)
    written = nib.load(tmp_path / "mask.nii.gz")
    assert np.allclose(written.affine, SCRAMBLED_AFFINE) and written.shape == data.shape
    back = axial_slices(load_nifti(tmp_path / "mask.nii.gz", is_label=True).array)
    rows, cols = np.nonzero(back[5] == 1)
    assert (
        abs(cols.min() - 3) <= 1
        and abs(cols.max() - 9) <= 1
        and abs(rows.min() - 4) <= 1
        and abs(rows.max() - 12) <= 1
    )
    assert back[7][15, 12] == 2 and not back[6].any()  # the click's square, on its own slice only


def test_bad_prompts_are_refused_with_the_reason(tmp_path):
    predictor = SegmentationPredictor(BoxFillSam(32))
    predictor.set_image(np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match=r"outside the 30x20 image"):
        predictor.predict(Prompt(points=[[30, 5]]))
    with pytest.raises(ValueError, match="box"):
        predictor.predict(Prompt(box=[5, 5, 2, 8]))
    with pytest.raises(ValueError, match="needs points, a box or a text"):
        Prompt()
    with pytest.raises(ValueError, match="0/1"):
        Prompt(points=[[1, 1]], labels=[2])
    (tmp_path / "p.json").write_text(json.dumps([{"points": [[1, 2]], "slice": 3}]))
    assert read_prompts(tmp_path / "p.json")[0].labels == [1]
    (tmp_path / "typo.json").write_text(json.dumps([{"points": [[1, 2]]}, {"point": [[1, 2]]}]))
    with pytest.raises(ValueError, match=r"prompt 1 has unknown keys \['point'\]; use any of"):
        read_prompts(tmp_path / "typo.json")
    (tmp_path / "flat.json").write_text(json.dumps([[1, 2]]))
    with pytest.raises(ValueError, match="prompt 0 is not a JSON object"):
        read_prompts(tmp_path / "flat.json")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    with pytest.raises(ValueError, match="needs 'slice'"):
        predict_file(BoxFillSam(32), tmp_path / "v.nii.gz", tmp_path / "o.nii.gz", [Prompt(points=[[1, 1]])])


def test_outputs_that_cannot_hold_the_mask_are_refused_before_anything_runs(tmp_path, capsys):
    from msa_hf.cli import main

    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "scan.png")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    refused = [
        ("scan.png", "mask.nii.gz", Prompt(points=[[1, 1]]), "mask of a 2-D image is written as .png"),
        ("scan.png", "mask.jpg", Prompt(points=[[1, 1]]), r"\(lossless\)"),
        ("scan.png", "mask.png", Prompt(points=[[1, 1]], slice=2), "'slice' and 'propagate' are for volumes"),
        ("v.nii.gz", "mask.png", Prompt(points=[[1, 1]], slice=2), "mask of a volume is written as .nii"),
        ("notes.txt", "mask.png", Prompt(points=[[1, 1]]), "notes.txt: not an image .* a NIfTI file"),
    ]
    (tmp_path / "notes.txt").write_text("not a picture")
    for source, output, prompt, reason in refused:
        with pytest.raises(ValueError, match=reason):
            predict_file(BoxFillSam(32), tmp_path / source, tmp_path / output, [prompt])
    # the command checks before it loads the model: a model that does not exist is not what it reports
    assert main(["predict", str(tmp_path / "no-model"), str(tmp_path / "scan.png"), str(tmp_path / "m.nii.gz"),
                 "--point", "1", "1"]) == 2  # fmt: skip
    assert "mask of a 2-D image is written as .png" in capsys.readouterr().err
    predict_file(
        BoxFillSam(32), tmp_path / "scan.png", tmp_path / "new" / "dir" / "m.png", [Prompt(box=[2, 2, 9, 9])]
    )
    assert np.asarray(Image.open(tmp_path / "new" / "dir" / "m.png")).max() == 1  # the folder is made


def test_predict_command_on_a_dicom_image_and_a_propagated_volume(tmp_path, tiny_base, capsys):
    from pydicom.data import get_testdata_file

    from msa_hf.cli import main

    assert main(["predict", str(tiny_base), get_testdata_file("CT_small.dcm"), str(tmp_path / "ct.png"),
                 "--box", "20", "20", "90", "90"]) == 0  # fmt: skip
    assert np.asarray(Image.open(tmp_path / "ct.png")).shape == (128, 128)
    data = np.random.default_rng(0).normal(100, 5, (20, 12, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
    arguments = ["predict", str(tiny_base), str(tmp_path / "scan.nii.gz"), str(tmp_path / "mask.nii.gz")]
    assert main([*arguments, "--slice", "5", "--box", "2", "2", "12", "15", "--propagate"]) == 0
    written = nib.load(tmp_path / "mask.nii.gz")
    assert written.shape == data.shape and np.allclose(written.affine, SCRAMBLED_AFFINE)
    assert "written:" in capsys.readouterr().out
    compiled_arguments = [*arguments[:-1], str(tmp_path / "compiled.nii.gz")]
    assert (
        main([*compiled_arguments, "--slice", "5", "--box", "2", "2", "12", "15", "--propagate", "--compile"])
        == 0
    )
    # the same masks (a voxel may flip where a logit sits within float rounding of the threshold)
    assert (nib.load(tmp_path / "compiled.nii.gz").get_fdata() != written.get_fdata()).mean() < 1e-3


def test_a_compiled_encoder_gives_the_same_embedding(tiny_base):
    from msa_hf import SamAdapterModel

    image = np.random.default_rng(1).integers(0, 255, (40, 56), dtype=np.uint8)
    plain = SegmentationPredictor(SamAdapterModel.from_pretrained(tiny_base))
    compiled = SegmentationPredictor(SamAdapterModel.from_pretrained(tiny_base), compile_encoder=True)
    assert compiled.model.vision_encoder._compiled_call_impl is not None
    assert plain.model.vision_encoder._compiled_call_impl is None
    from msa_hf.inference.volume_predictor import VolumePredictor

    volumes = VolumePredictor(SamAdapterModel.from_pretrained(tiny_base), compile_encoder=True)
    assert volumes.model.vision_encoder._compiled_call_impl is not None
    for predictor in (plain, compiled):
        predictor.set_image(image)
    torch.testing.assert_close(compiled._embedding, plain._embedding, atol=1e-5, rtol=1e-5)


def test_pictures_a_segmentation_would_get_wrong_are_refused_and_rgb_ranges_agree():
    from msa_hf.inference.image_encoding import image_to_pixel_values

    with_nan = np.ones((20, 30), np.float32)
    with_nan[2, 3] = np.nan
    for picture, reason in (
        (with_nan, "1 NaN or infinite pixel"),
        (np.zeros((20, 30, 5), np.uint8), r"shape \(20, 30, 5\)"),
        (np.zeros((4, 20, 30), np.float32), r"shape \(4, 20, 30\)"),
        (np.zeros((0, 30), np.uint8), "shape"),
        (np.full((20, 30, 3), 7.5), r"RGB image must be .* in \[0, 1\]"),
        (np.zeros((20, 30, 3), np.int32), "RGB image must be"),
    ):
        with pytest.raises(ValueError, match=reason):
            image_to_pixel_values(picture, 32)
    with pytest.raises(ValueError, match="NaN"):
        SegmentationPredictor(BoxFillSam(32)).set_image(with_nan, "CT")
    # one RGB picture in its three storage ranges (and with an alpha channel) gives the same model input
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    expected = image_to_pixel_values(rgb, 32)
    for same in (
        rgb.astype(np.uint16) * 257,
        rgb / 255.0,
        np.dstack([rgb, np.full((20, 30), 255, np.uint8)]),
    ):
        torch.testing.assert_close(image_to_pixel_values(same, 32), expected)
    torch.testing.assert_close(
        image_to_pixel_values(rgb[..., :1], 32), image_to_pixel_values(rgb[..., 0], 32)
    )


@pytest.mark.parametrize(("bias", "expected"), [(5.0, 1.0), (-5.0, 0.0)])
def test_the_reported_score_is_the_iou_heads_clipped_to_zero_one(bias, expected):
    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.testing import randomize_weights, tiny_sam_kwargs

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0, std=0.1)
    head = model.mask_decoder.iou_prediction_head.proj_out
    with torch.no_grad():  # the head regresses IoU without squashing it: push it out of [0, 1]
        head.weight.zero_()
        head.bias.fill_(bias)
    predictor = SegmentationPredictor(model)
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8))
    mask, score = predictor.predict(Prompt(box=[5, 5, 30, 30]))
    with torch.no_grad():
        raw = model(
            image_embeddings=predictor._embedding,
            input_boxes=torch.tensor([[[0.0, 0.0, 10.0, 10.0]]]),
            multimask_output=False,
        ).iou_scores
    assert float(raw.flatten()[0]) == pytest.approx(bias)  # what the head says, before clipping
    assert score == expected
