"""msa-hf predict: masks in the input's geometry, prompts in its pixel coordinates, bad prompts refused."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from torch_support import needs_compiling_torch

from msa_hf.data import axial_slices, load_nifti
from msa_hf.inference.placement import torch_compiles_sam
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


def test_nifti_outputs_keep_both_of_the_inputs_affines_their_codes_and_units(tmp_path):
    """An input with a scanner qform beside an sform to a template (as a registered scan has) and units of
    micrometres: the mask, its probabilities and its structure files carry both affines with their codes and
    those units, and a mask of a DICOM series is in scanner coordinates (codes 1) and millimetres."""
    from msa_hf.testing import write_dicom_series

    data = np.random.default_rng(0).normal(100, 5, (20, 12, 16)).astype(np.float32)
    template = SCRAMBLED_AFFINE.copy()
    template[:3, 3] += [7.0, -3.0, 11.0]  # the same grid, placed elsewhere
    image = nib.Nifti1Image(data, None)
    image.set_qform(SCRAMBLED_AFFINE, code=1)
    image.set_sform(template, code=4)
    image.header.set_xyzt_units("micron", "sec")
    nib.save(image, tmp_path / "scan.nii.gz")
    prompts = [Prompt(box=[3, 4, 9, 12], slice=5, name="liver")]
    predict_file(
        BoxFillSam(32), tmp_path / "scan.nii.gz", tmp_path / "mask.nii.gz", prompts,
        probabilities_path=tmp_path / "probabilities.nii.gz",
    )  # fmt: skip
    predict_file(BoxFillSam(32), tmp_path / "scan.nii.gz", tmp_path / "files", prompts, structure_files=True)
    for path in (
        tmp_path / "mask.nii.gz",
        tmp_path / "probabilities.nii.gz",
        tmp_path / "files" / "liver.nii.gz",
    ):
        header = nib.load(path).header
        qform, qform_code = header.get_qform(coded=True)
        sform, sform_code = header.get_sform(coded=True)
        assert (int(qform_code), int(sform_code)) == (1, 4), path
        assert np.allclose(qform, SCRAMBLED_AFFINE) and np.allclose(sform, template), path
        assert header.get_xyzt_units() == ("micron", "sec"), path

    write_dicom_series(tmp_path / "series", np.zeros((6, 20, 24), np.float32))
    predict_file(
        BoxFillSam(32), tmp_path / "series", tmp_path / "series.nii.gz", [Prompt(box=[2, 2, 9, 9], slice=2)]
    )
    written = nib.load(tmp_path / "series.nii.gz")
    qform, qform_code = written.header.get_qform(coded=True)
    sform, sform_code = written.header.get_sform(coded=True)
    assert (int(qform_code), int(sform_code)) == (1, 1) and np.allclose(qform, sform)
    assert written.header.get_xyzt_units()[0] == "mm"


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
        (
            "v.nii.gz",
            "mask.png",
            Prompt(points=[[1, 1]], slice=2),
            "mask of a volume is written as NIfTI .* NRRD .* MetaImage",
        ),
        ("notes.txt", "mask.png", Prompt(points=[[1, 1]]), "notes.txt: not an image .* a volume \\(NIfTI"),
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
    if not torch_compiles_sam():  # refused, before anything is written
        assert main([*compiled_arguments, "--slice", "5", "--box", "2", "2", "12", "15", "--compile"]) != 0
        assert "needs torch" in capsys.readouterr().err and not (tmp_path / "compiled.nii.gz").exists()
        return
    assert (
        main([*compiled_arguments, "--slice", "5", "--box", "2", "2", "12", "15", "--propagate", "--compile"])
        == 0
    )
    # the same masks (a voxel may flip where a logit sits within float rounding of the threshold)
    assert (nib.load(tmp_path / "compiled.nii.gz").get_fdata() != written.get_fdata()).mean() < 1e-3


@needs_compiling_torch
def test_a_compiled_encoder_gives_the_same_embedding(tiny_base, capsys):
    from msa_hf import SamAdapterModel

    image = np.random.default_rng(1).integers(0, 255, (40, 56), dtype=np.uint8)
    plain = SegmentationPredictor(SamAdapterModel.from_pretrained(tiny_base))
    compiled = SegmentationPredictor(SamAdapterModel.from_pretrained(tiny_base), compile_encoder=True)
    assert compiled.model.vision_encoder._compiled_call_impl is not None
    assert plain.model.vision_encoder._compiled_call_impl is None
    from msa_hf.inference.volume_predictor import VolumePredictor

    volumes = VolumePredictor(SamAdapterModel.from_pretrained(tiny_base), compile_encoder=True)
    assert volumes.model.vision_encoder._compiled_call_impl is not None
    for predictor in (plain, compiled, compiled):
        predictor.set_image(image)
    torch.testing.assert_close(compiled._embedding, plain._embedding, atol=1e-5, rtol=1e-5)
    # the compilation is reported once, with its time; a second predictor on the model does not recompile
    assert capsys.readouterr().err.count("image encoder compiled in") == 1
    again = SegmentationPredictor(compiled.model, compile_encoder=True)
    again.set_image(image)
    assert "compil" not in capsys.readouterr().err


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


def _random_tiny_sam():
    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.testing import randomize_weights, tiny_sam_kwargs

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0, std=0.1)
    return model


def _tiff_pages(path) -> list[np.ndarray]:
    from PIL import ImageSequence

    with Image.open(path) as image:
        return [np.asarray(page, dtype=np.float32).copy() for page in ImageSequence.Iterator(image)]


def test_probabilities_of_an_image_are_the_sigmoid_of_each_prompts_mask_logits(tmp_path):
    model = _random_tiny_sam()
    image = np.random.default_rng(1).integers(0, 255, (40, 50), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "scan.png")
    prompts = [Prompt(box=[5, 5, 30, 25]), Prompt(points=[[40, 30]], labels=[1])]
    summary = predict_file(
        model, tmp_path / "scan.png", tmp_path / "mask.png", prompts, probabilities_path=tmp_path / "p.tif"
    )
    pages = _tiff_pages(tmp_path / "p.tif")
    predictor = SegmentationPredictor(model)
    predictor.set_image(image)
    assert len(pages) == 2 and summary["probabilities"] == str(tmp_path / "p.tif")
    for page, prompt in zip(pages, prompts, strict=True):
        expected = predictor.predict_masks(prompt)
        assert page.shape == (40, 50) and page.dtype == np.float32 and 0 <= page.min() <= page.max() <= 1
        best_logits = torch.from_numpy(expected.logits[expected.best])
        np.testing.assert_allclose(page, torch.sigmoid(best_logits).numpy(), atol=1e-6)
        assert np.array_equal(page > 0.5, expected.mask)  # the label map's mask is the map above one half
    labels = np.asarray(Image.open(tmp_path / "mask.png"))
    assert np.array_equal(labels == 2, pages[1] > 0.5)  # the later prompt's mask is written over the earlier


def test_masks_reach_the_image_size_as_sam_post_processes_them_and_only_when_asked():
    from transformers import SamImageProcessor

    from msa_hf.processing.prompts import resized_shape

    model = _random_tiny_sam()
    image = np.random.default_rng(3).integers(0, 255, (40, 50), dtype=np.uint8)
    predictor = SegmentationPredictor(model)
    predictor.set_image(image)
    prediction = predictor.predict_masks(Prompt(points=[[20, 12]]))  # a single click: three masks
    assert prediction.low_res.shape == (3, 32, 32) and not prediction._upsampled
    best = prediction.mask  # the label map's mask: only the best is brought to the image's size
    assert list(prediction._upsampled) == [prediction.best]
    processor = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    reference = processor.post_process_masks(
        torch.from_numpy(prediction.low_res)[None, None],
        [(40, 50)],
        [resized_shape((40, 50), 64)],
        binarize=False,
    )[0][0].numpy()  # transformers' SamProcessor post-processing, before the threshold
    np.testing.assert_allclose(prediction.logits, reference, atol=1e-5)
    assert np.array_equal(best, reference[prediction.best] > 0)
    np.testing.assert_allclose(prediction.probabilities_of(1), 1 / (1 + np.exp(-reference[1])), atol=1e-6)


def test_multimask_keeps_sams_three_masks_and_their_scores(tmp_path, capsys):
    from msa_hf.cli import main

    model = _random_tiny_sam()
    image = np.random.default_rng(2).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "scan.png")
    prompt = Prompt(box=[4, 4, 20, 20])  # a box: one mask under SAM's rule, three when asked
    summary = predict_file(
        model, tmp_path / "scan.png", tmp_path / "mask.png", [prompt], probabilities_path=tmp_path / "p.tiff",
        multimask=True,
    )  # fmt: skip
    pages = _tiff_pages(tmp_path / "p.tiff")
    predictor = SegmentationPredictor(model)
    predictor.set_image(image)
    expected = predictor.predict_masks(prompt, multimask=True)
    scores = summary["masks"][0]["scores"]
    assert len(pages) == 3 and len(scores) == 3 and all(0 <= v <= 1 for v in scores)
    np.testing.assert_allclose(scores, expected.scores, atol=1e-6)
    np.testing.assert_allclose(np.stack(pages), expected.probabilities, atol=1e-6)
    assert not np.allclose(pages[0], pages[1])  # three different masks
    best = int(np.argmax(scores))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "mask.png")) == 1, expected.logits[best] > 0)
    assert summary["masks"][0]["score"] == pytest.approx(scores[best])
    # the command line prints the three scores
    model.save_pretrained(tmp_path / "model")
    arguments = ["predict", str(tmp_path / "model"), str(tmp_path / "scan.png"), str(tmp_path / "cli.png"),
                 "--box", "4", "4", "20", "20", "--multimask", "--save-probabilities", str(tmp_path / "cli.tif"),
                 "--device", "cpu"]  # fmt: skip
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "three masks, predicted IoU" in printed and "(probabilities)" in printed
    np.testing.assert_allclose(np.stack(_tiff_pages(tmp_path / "cli.tif")), expected.probabilities, atol=1e-5)


def test_probabilities_of_a_propagated_volume_lie_on_the_input_grid(tmp_path):
    model = _random_tiny_sam()
    head = model.mask_decoder.iou_prediction_head.proj_out
    with torch.no_grad():  # every mask scores high, so propagation walks on until a mask vanishes
        head.weight.zero_()
        head.bias.fill_(0.9)
    yy, xx = np.mgrid[0:24, 0:20]
    data = np.zeros((20, 24, 10), np.float32)
    for z in range(10):  # a bright disk through every slice, on a scrambled voxel order
        data[..., z] = 100 + 400 * (((xx - 10) ** 2 + (yy - 12) ** 2) < 30).T
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
    slices = axial_slices(load_nifti(tmp_path / "scan.nii.gz").array)
    seed = len(slices) // 2
    height, width = slices.shape[1:]
    box = [width // 4, height // 4, 3 * width // 4, 3 * height // 4]
    prompts = [Prompt(box=box, slice=seed, propagate=True), Prompt(box=box, slice=seed)]
    summary = predict_file(
        model, tmp_path / "scan.nii.gz", tmp_path / "mask.nii.gz", prompts,
        probabilities_path=tmp_path / "p.nii.gz",
    )  # fmt: skip
    written = nib.load(tmp_path / "p.nii.gz")
    assert np.allclose(written.affine, SCRAMBLED_AFFINE) and written.shape == (*data.shape, 2)
    assert written.get_data_dtype() == np.float32
    # back to display slices, one map per prompt
    maps = [axial_slices(load_nifti(tmp_path / "p.nii.gz", channel=k).array) for k in range(2)]
    labels = axial_slices(load_nifti(tmp_path / "mask.nii.gz", is_label=True).array)
    first, last = summary["masks"][0]["slices"]
    assert last - first >= 2  # maps on propagated slices are checked, not only the seed's
    for index in range(len(slices)):
        if first <= index <= last:  # the propagated prompt's mask is its map above one half
            mask = (labels[index] == 1) | ((labels[index] == 2) & (maps[0][index] > 0.5))
            assert np.array_equal(maps[0][index] > 0.5, mask), index
        else:
            assert not maps[0][index].any(), index
    assert not np.delete(maps[1], seed, axis=0).any()  # the other prompt: its own slice only
    from msa_hf.data.volumes import guess_modality, load_volume
    from msa_hf.inference.volume_predictor import VolumePredictor

    predictor = VolumePredictor(model)
    predictor.set_volume(slices, guess_modality(load_volume(tmp_path / "scan.nii.gz")))
    expected = predictor.predict_masks(seed, prompts[1])
    np.testing.assert_allclose(maps[1][seed], expected.probabilities[expected.best], atol=1e-5)


def test_probability_outputs_that_cannot_be_written_are_refused_before_anything_runs(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "scan.png")
    box = [Prompt(box=[1, 1, 5, 5])]
    cases = [
        (tmp_path / "scan.png", box, False, "scan.png"),
        (tmp_path / "mask.png", box, False, "same file as the mask"),
        (tmp_path / "p.png", box, False, "written as .tif or .tiff"),
        (tmp_path / "p.nii.gz", box, False, "2-D image"),
    ]
    for path, prompts, multimask, message in cases:
        with pytest.raises(ValueError, match=message):
            predict_file(BoxFillSam(16), tmp_path / "scan.png", tmp_path / "mask.png", prompts, probabilities_path=path,
                         multimask=multimask)  # fmt: skip
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    with pytest.raises(ValueError, match="propagation carries one"):
        predict_file(BoxFillSam(16), tmp_path / "scan.nii.gz", tmp_path / "m.nii.gz",
                     [Prompt(box=[1, 1, 5, 5], slice=1, propagate=True)], multimask=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"written as .nii or .nii.gz"):
        predict_file(BoxFillSam(16), tmp_path / "scan.nii.gz", tmp_path / "m.nii.gz",
                     [Prompt(box=[1, 1, 5, 5], slice=1)], probabilities_path=tmp_path / "p.tif")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz", "scan.png"]  # nothing written


def test_a_dicom_series_gets_a_dicom_seg_whose_frames_are_the_mask(tiny_base, tmp_path, capsys):
    import highdicom
    import pydicom

    from msa_hf.cli import main
    from msa_hf.data.volumes import dicom_series_slices, load_volume
    from msa_hf.testing import write_dicom_series

    volume = np.full((6, 20, 24), -1000.0, np.float32)
    volume[1:4, 5:14, 6:16] = 300.0  # not symmetric along any axis: a flipped mapping would show
    write_dicom_series(tmp_path / "series", volume)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([
        {"box": [5, 4, 17, 15], "slice": 2, "propagate": True, "name": "bright block", "value": 4},
        {"box": [1, 1, 8, 8], "slice": 4},
    ]))  # fmt: skip
    arguments = ["predict", str(tiny_base), str(tmp_path / "series"), str(tmp_path / "seg.dcm"),
                 "--prompts", str(prompts), "--device", "cpu"]  # fmt: skip
    assert main(arguments) == 0
    printed = capsys.readouterr().out  # what each segment was coded as, a name of no concept shown so
    assert (
        "  label 4: Tissue (SCT 85756007): Tissue, the generic code: the name denotes no concept" in printed
    )
    assert main([*arguments[:3], str(tmp_path / "mask.nii.gz"), *arguments[4:]]) == 0  # the same as NIfTI
    assert "coded as" not in capsys.readouterr().out  # a NIfTI codes nothing
    expected = load_volume(tmp_path / "mask.nii.gz", is_label=True).array  # RAS+, as the series reads
    segmentation = highdicom.seg.segread(tmp_path / "seg.dcm")
    values = [int(v) for v in np.unique(expected) if v]
    assert [s.SegmentLabel for s in segmentation.SegmentSequence] == [
        "bright block" if v == 4 else f"structure {v}" for v in values
    ]
    found, _ = dicom_series_slices(tmp_path / "series")
    uids = [str(dataset.SOPInstanceUID) for _, dataset in found]
    frames = segmentation.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=list(range(1, len(values) + 1)), skip_overlap_checks=True,
        ignore_spatial_locations=True, assert_missing_frames_are_empty=True,
    )  # fmt: skip
    from msa_hf.inference.dicom_seg import labels_on_series_grid

    grid = labels_on_series_grid(tmp_path / "series", expected, load_volume(tmp_path / "mask.nii.gz").affine)
    assert frames.shape == (len(uids), 20, 24, len(values)) and grid.any()
    for number, value in enumerate(values, start=1):
        assert np.array_equal(frames[..., number - 1].astype(bool), grid == value), value
    # the mapping back onto the series: a mask made from the RAS+ volume lands on each instance's own bright pixels
    series = load_volume(tmp_path / "series")
    bright = labels_on_series_grid(tmp_path / "series", (series.array > 0).astype(np.uint8), series.affine)
    for index, (_, dataset) in enumerate(found):
        assert np.array_equal(bright[index] == 1, dataset.pixel_array.astype(np.float32) - 1024 > 0), index
    written = pydicom.dcmread(tmp_path / "seg.dcm")
    assert (
        written.Modality == "SEG" and written.SeriesDescription == "MSA segmentation"
    )  # the source has none


def test_dicom_seg_is_only_for_dicom_series_inputs(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    with pytest.raises(ValueError, match="references the images of a DICOM series"):
        predict_file(
            BoxFillSam(16),
            tmp_path / "scan.nii.gz",
            tmp_path / "seg.dcm",
            [Prompt(box=[1, 1, 5, 5], slice=1)],
        )
