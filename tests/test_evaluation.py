"""Evaluation protocols, per-case scoring and reports, checked on models whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from msa_hf.cli import main
from msa_hf.data import prepare_dataset
from msa_hf.evaluation.metrics import picture_surface_metrics, surface_metrics
from msa_hf.evaluation.protocols import CaseScore, clicks_to_reach, evaluate_model, markdown_table
from msa_hf.testing import BoxFillSam, FillPromptedSlices


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    source = tmp_path_factory.mktemp("disks")
    yy, xx = np.mgrid[0:48, 0:48]
    expected = {}
    for index in range(8):
        radius = 5 + index
        disk = ((yy - 24) ** 2 + (xx - 22) ** 2 <= radius**2).astype(np.uint8)
        Image.fromarray((disk * 180 + 20).astype(np.uint8)).save(source / f"disk{index}.png")
        Image.fromarray(disk * 255).save(source / f"disk{index}_mask.png")
        rows, cols = np.nonzero(disk)
        box = np.zeros_like(disk, bool)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        # Dice, and HD95 and NSD measured in the picture's plane, in pixels
        expected[f"disk{index}"] = (
            2 * disk.sum() / (disk.sum() + box.sum()),
            *surface_metrics(box, disk, 2.0),
        )
    output = tmp_path_factory.mktemp("prepared") / "disks"
    prepare_dataset(source, output, split=(0.0, 0.0, 1.0))
    return output, expected


def test_box_protocol_scores_a_box_filling_model_at_the_box_fill_dice(disks, tmp_path):
    folder, expected = disks
    report = evaluate_model(BoxFillSam(48), folder, "test", ("box",), output_dir=tmp_path / "out")
    cases = (tmp_path / "out" / "cases_box.csv").read_text().splitlines()[1:]
    assert len(cases) == 8
    assert (tmp_path / "out" / "cases_box.csv").read_text().startswith("case_id,class_name,dice,iou,hd95_px,")
    for line in cases:
        case_id, _, dice, _, hd95, nsd, _ = line.split(",")
        # exact: the model frame is the image
        assert (float(dice), float(hd95), float(nsd)) == pytest.approx(expected[case_id], abs=1e-9)
    mean = np.mean([dice for dice, _, _ in expected.values()])
    assert report["tables"]["box"]["class_1"]["dice"] == pytest.approx(mean)
    results = (tmp_path / "out" / "results.md").read_text()
    assert "| class_1 | " in results and "HD95 (pixels)" in results
    assert (tmp_path / "out" / "overlays.png").is_file()


def test_iterative_protocol_adds_clicks_and_reports_the_curve(disks, tmp_path):
    folder, _ = disks
    report = evaluate_model(
        BoxFillSam(48), folder, "test", ("points1", "iterative"), tmp_path / "it", clicks=3
    )
    curve = report["iterative"]["dice_per_click"]
    assert len(curve) == 3 and (tmp_path / "it" / "dice_vs_clicks.png").is_file()
    # the stand-in paints a 5x5 square at the newest click: the first click is the most interior point
    assert curve[0] == pytest.approx(report["tables"]["points1"]["class_1"]["dice"])


def test_clicks_to_reach_and_table_layout():
    scores = [
        CaseScore("a", "liver", 0.9, 0.8, 1.0, 1.0, dice_per_click=[0.5, 0.86, 0.91]),
        CaseScore("b", "liver", 0.7, 0.6, 2.0, 0.9, dice_per_click=[0.7, 0.7, 0.7]),
    ]
    assert clicks_to_reach(scores, 0.85) == pytest.approx((2 + 4) / 2)  # never reached: max + 1
    assert clicks_to_reach(scores, 0.90) == pytest.approx((3 + 4) / 2)
    table = markdown_table({"MSA": {"liver": {"dice": 0.8}}, "SAM": {"liver": {"dice": 0.5}}})
    assert table.splitlines()[0] == "| structure | MSA | SAM |"
    assert "| liver | 0.800 | 0.500 |" in table and "| **mean** | **0.800** | **0.500** |" in table


def test_cli_evaluate_names_a_missing_model(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_volume_evaluation_reassembles_windows_into_case_volumes(tmp_path):
    import nibabel as nib

    from msa_hf.evaluation.protocols import evaluate_volumes

    source = tmp_path / "vol"
    (source / "imagesTr").mkdir(parents=True)
    (source / "labelsTr").mkdir()
    for index in range(3):
        image = np.full((20, 16, 9), 50.0, np.float32)
        label = np.zeros((20, 16, 9), np.uint8)
        label[4:10, 3:9, 2:7] = 1  # 6 x 6 on 5 of the 9 slices
        label[12:16, 3:9, 1:3] = 2  # a second structure, on 2 slices
        nib.save(nib.Nifti1Image(image, np.eye(4)), source / "imagesTr" / f"c{index}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), source / "labelsTr" / f"c{index}.nii.gz")
    prepare_dataset(
        source, tmp_path / "prepared", split=(0.0, 0.0, 1.0), modality="MR", keep_empty_slices=True
    )
    points1 = ("volume_points1",)  # the stand-in answers windows, not a predictor's slices
    report = evaluate_volumes(
        FillPromptedSlices(32, 4), tmp_path / "prepared", "test", depth=4, stride=2, classes="class_1",
        protocols=points1,
    )  # fmt: skip
    # the 5 prompted slices are filled (16 x 20 each), the 4 others empty: Dice = 2*180 / (180 + 5*320)
    expected = 2 * 180 / (180 + 5 * 320)
    scores = report["scores"]["volume_points1"]
    assert len(scores) == 3 and all(s.dice == pytest.approx(expected) for s in scores)
    assert list(report["tables"]["volume_points1"]) == ["class_1"]  # only the structure asked for
    assert report["tables"]["volume_points1"]["class_1"]["cases"] == 3
    both = evaluate_volumes(
        FillPromptedSlices(32, 4), tmp_path / "prepared", "test", depth=4, stride=2, protocols=points1
    )
    assert sorted(both["tables"]["volume_points1"]) == ["class_1", "class_2"]
    # the second structure: 2 prompted slices of 4 x 6 each, filled: Dice = 2*48 / (48 + 2*320)
    assert all(
        s.dice == pytest.approx(2 * 48 / (48 + 2 * 320))
        for s in both["scores"]["volume_points1"]
        if s.class_name == "class_2"
    )
    with pytest.raises(ValueError, match="'liver' is not a structure of this dataset; choose from class_1"):
        evaluate_volumes(FillPromptedSlices(32, 4), tmp_path / "prepared", "test", depth=4, classes="liver")


def test_protocols_decode_with_the_fast_decoder_and_get_the_stock_masks(disks, tmp_path, monkeypatch):
    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.testing import randomize_adapter_weights, randomize_weights, tiny_sam_kwargs

    folder, _ = disks
    kwargs = tiny_sam_kwargs()
    for part in ("vision_config", "prompt_encoder_config"):
        kwargs[part]["image_size"] = 48
    model = SamAdapterModel(SamAdapterConfig(**kwargs)).eval()
    randomize_weights(model, seed=0)
    randomize_adapter_weights(model, seed=1)
    fast = evaluate_model(model, folder, "test", ("box", "iterative"), tmp_path / "fast", clicks=3)
    monkeypatch.setattr("msa_hf.inference.click_decoder.supports_click_decoder", lambda model: False)
    stock = evaluate_model(model, folder, "test", ("box", "iterative"), tmp_path / "stock", clicks=3)
    assert fast["tables"] == stock["tables"] and fast["iterative"] == stock["iterative"]


def test_every_protocol_shares_one_encoding_of_each_image(disks, tmp_path):
    class CountingBoxFillSam(BoxFillSam):
        encoded = 0

        def get_image_embeddings(self, pixel_values):
            CountingBoxFillSam.encoded += len(pixel_values)
            return pixel_values

    folder, _ = disks
    report = evaluate_model(CountingBoxFillSam(48), folder, "test", ("box", "points1", "iterative"), clicks=2)
    assert CountingBoxFillSam.encoded == report["rows"] == 8


def test_cli_evaluate_prints_the_iterative_curve_it_writes(tiny_base, disk_dataset, tmp_path, capsys):
    import json

    assert main(["evaluate", str(tiny_base), "--dataset", str(disk_dataset), "--protocols", "iterative",
                 "--clicks", "3", "--output-dir", str(tmp_path / "scores")]) == 0  # fmt: skip
    iterative = json.loads((tmp_path / "scores" / "results.json").read_text())["iterative"]
    curve = ", ".join(f"{d:.3f}" for d in iterative["dice_per_click"])
    assert (
        f"iterative: Dice per click {curve}; mean clicks to 0.85: {iterative['clicks_to_0.85']:.2f}, to 0.90: "
        f"{iterative['clicks_to_0.90']:.2f} (a case that never gets there counts 4)"
    ) in capsys.readouterr().out


def test_a_case_of_pictures_of_different_sizes_is_scored_picture_by_picture(tmp_path):
    # images/<patient>/001.png: each patient folder is one case, and a patient's pictures differ in size
    # (stacked as slices they could not be scored at all)
    sizes = {"001": (48, 40), "002": (36, 52)}
    expected = {}
    for patient in ("p1", "p2"):
        for name, (height, width) in sizes.items():
            yy, xx = np.mgrid[0:height, 0:width]
            disk = ((yy - height // 2) ** 2 + (xx - width // 2) ** 2 <= 64).astype(np.uint8)
            for folder, pixels in (("images", disk * 180 + 20), ("masks", disk * 255)):
                (tmp_path / "source" / folder / patient).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(
                    tmp_path / "source" / folder / patient / f"{name}.png"
                )
            rows, cols = np.nonzero(disk)
            box = np.zeros_like(disk, bool)
            box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
            expected.setdefault(patient, []).append((box, disk.astype(bool)))
    prepare_dataset(tmp_path / "source", tmp_path / "prepared", split=(0.0, 0.0, 1.0))
    evaluate_model(BoxFillSam(52), tmp_path / "prepared", "test", ("box",), output_dir=tmp_path / "out")
    cases = (tmp_path / "out" / "cases_box.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in cases) == ["p1", "p2"]
    for line in cases:
        case_id, _, dice, _, hd95, nsd, _ = line.split(",")
        pictures = expected[case_id]
        shared = sum((box & disk).sum() for box, disk in pictures)
        total = sum(box.sum() + disk.sum() for box, disk in pictures)
        assert float(dice) == pytest.approx(2 * shared / total, abs=1e-9)
        assert (float(hd95), float(nsd)) == pytest.approx(picture_surface_metrics(pictures, 2.0), abs=1e-9)


def test_a_structure_thinner_than_a_model_pixel_is_prompted_where_it_lies_and_scored(tmp_path):
    """A 2x2 structure of a 64 px picture, seen by a 16 px model: resizing by nearest neighbour loses it (no
    model pixel centre lies on it), and evaluation once left it out of every mean. It is now prompted on the
    model pixel it covers, (row 2, column 5). The stand-in fills the box: that pixel, shown at the picture's
    size, is rows 8-11 by columns 20-23 less its four corners (bilinear upsampling), 12 pixels holding three
    of the structure's four. One click: a 5x5 square of model pixels around it, 398 picture pixels holding
    all four."""
    picture = np.full((64, 64), 20, np.uint8)
    structure = np.zeros((64, 64), np.uint8)
    structure[8:10, 20:22] = 1
    (tmp_path / "source").mkdir()
    Image.fromarray(picture + structure * 160).save(tmp_path / "source" / "thin.png")
    Image.fromarray(structure * 255).save(tmp_path / "source" / "thin_mask.png")
    prepare_dataset(tmp_path / "source", tmp_path / "prepared", split=(0.0, 0.0, 1.0))
    report = evaluate_model(
        BoxFillSam(16), tmp_path / "prepared", "test", ("box", "points1"), output_dir=tmp_path / "out"
    )
    assert report["tables"]["box"]["class_1"]["dice"] == pytest.approx(2 * 3 / (12 + 4))
    assert report["tables"]["points1"]["class_1"]["dice"] == pytest.approx(2 * 4 / (398 + 4))
    (line,) = (tmp_path / "out" / "cases_box.csv").read_text().splitlines()[1:]
    assert line.startswith("thin,class_1,")
