"""msa-hf predict over many inputs: one model load, each mask equal to predicting its input alone, prompts from
label maps with the structures' own values, manifests, a failed input reported and skipped, and the inputs
shared out over two processes under accelerate launch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from msa_hf.cli import main
from msa_hf.data import axial_slices, load_nifti
from msa_hf.inference.batch import collect_items, is_batch_source, prompts_from_label_map
from msa_hf.inference.loading import load_for_inference
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import SCRAMBLED_AFFINE

REPO = Path(__file__).resolve().parents[1]


def _pictures(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        image = rng.integers(0, 60, (40 + 4 * index, 36)).astype(np.uint8)
        image[8:24, 6 + index : 22 + index] = 200
        path = folder / f"case{index}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _alone(model_folder: Path, input_path: Path, prompts: list[Prompt], tmp: Path) -> np.ndarray:
    model, processor = load_for_inference(str(model_folder))
    output = tmp / f"alone-{input_path.stem}.png"
    predict_file(model, input_path, output, prompts, window=processor.window, device="cpu")
    return np.asarray(Image.open(output))


def _summary(folder: Path) -> list[dict[str, str]]:
    with (folder / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_a_folder_is_segmented_with_one_load_and_a_bad_input_is_skipped(tiny_base, tmp_path, capsys):
    pictures = _pictures(tmp_path / "in")
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png at all")
    before = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    code = main(["predict", str(tiny_base), str(tmp_path / "in"), str(tmp_path / "out"),
                 "--box", "5", "6", "25", "22", "--device", "cpu"])  # fmt: skip
    assert code == 1  # one input failed; the others are written
    printed = capsys.readouterr().out
    assert "3 of 4 inputs segmented, 1 failed." in printed and "broken.png" in printed
    rows = {Path(row["input"]).name: row for row in _summary(tmp_path / "out")}
    assert rows["broken.png"]["status"] == "failed" and "broken.png" in rows["broken.png"]["error"]
    for picture in pictures:
        assert rows[picture.name]["status"] == "ok"
        written = np.asarray(Image.open(tmp_path / "out" / f"{picture.stem}.png"))
        alone = _alone(tiny_base, picture, [Prompt(box=[5, 6, 25, 22])], tmp_path)
        assert np.array_equal(written, alone)  # the same mask as predicting that input alone
        assert int(rows[picture.name]["pixels"]) == int((written == 1).sum())
        assert (
            rows[picture.name]["volume_ml"] == rows[picture.name]["plane"] == ""
        )  # a picture: no voxels, no plane
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == before  # inputs untouched
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "case0.png", "case1.png", "case2.png", "summary.csv", "summary.md"
    ]  # fmt: skip


def _volume_with_labels(folder: Path, name: str, shift: int) -> tuple[Path, Path]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    data = np.full((20, 24, 6), 50, np.float32)
    labels = np.zeros(data.shape, np.uint8)
    labels[3 + shift : 9 + shift, 4:12, 1:4] = 7  # two structures with their own label values
    labels[12:18, 14:22, 2:6] = 300 % 256  # 44
    data[labels > 0] = 400
    image_path, label_path = folder / "images" / name, folder / "labels" / name
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), image_path)
    nib.save(nib.Nifti1Image(labels, SCRAMBLED_AFFINE), label_path)
    return image_path, label_path


def test_prompts_from_a_label_map_are_each_structures_box_or_click_per_slice(tmp_path):
    _, label_path = _volume_with_labels(tmp_path, "a.nii.gz", 0)
    display = axial_slices(load_nifti(label_path, is_label=True).array)
    boxes = prompts_from_label_map(label_path, "box", volume=True)
    expected = [(v, z) for v in (7, 44) for z in range(len(display)) if (display[z] == v).any()]
    assert [(p.value, p.slice) for p in boxes] == expected
    for prompt in boxes:
        rows, cols = np.nonzero(display[prompt.slice] == prompt.value)
        assert prompt.box == [cols.min(), rows.min(), cols.max(), rows.max()]
    clicks = prompts_from_label_map(label_path, "click", volume=True)
    for prompt in clicks:
        x, y = prompt.points[0]
        assert display[prompt.slice][int(y), int(x)] == prompt.value and prompt.labels == [1]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(ValueError, match="no structure in it"):
        prompts_from_label_map(tmp_path / "empty.png", "box", volume=False)


def test_volumes_re_segmented_from_their_label_maps_keep_the_structures_values(tiny_base, tmp_path):
    pairs = [_volume_with_labels(tmp_path, f"{name}.nii.gz", shift) for name, shift in (("a", 0), ("b", 2))]
    code = main(["predict", str(tiny_base), str(tmp_path / "images"), str(tmp_path / "out"),
                 "--prompts-from-labels", str(tmp_path / "labels"), "--device", "cpu",
                 "--save-probabilities", str(tmp_path / "probabilities")])  # fmt: skip
    assert code == 0
    model, processor = load_for_inference(str(tiny_base))
    for image_path, label_path in pairs:
        written = nib.load(tmp_path / "out" / image_path.name)
        assert np.allclose(written.affine, SCRAMBLED_AFFINE)
        prompts = prompts_from_label_map(label_path, "box", volume=True)
        alone = tmp_path / f"alone-{image_path.name}"
        predict_file(model, image_path, alone, prompts, window=processor.window, device="cpu")
        assert np.array_equal(np.asarray(written.dataobj), np.asarray(nib.load(alone).dataobj))
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 7, 44}
        probabilities = (
            tmp_path / "probabilities" / image_path.name.replace(".nii.gz", "_probabilities.nii.gz")
        )
        assert nib.load(probabilities).shape == (*written.shape, len(prompts))
    # each volume's masks in mL: its voxels times the input's voxel volume; each structure's whole volume as
    # its written mask holds it
    for row in _summary(tmp_path / "out"):
        voxel_ml = float(np.prod(nib.load(row["input"]).header.get_zooms()[:3])) / 1000
        assert int(row["pixels"]) > 0 and row["plane"] == "axial"
        assert float(row["volume_ml"]) == pytest.approx(int(row["pixels"]) * voxel_ml, abs=2e-4)
        written = np.asarray(nib.load(row["output"]).dataobj)
        structures = dict(item.split("=") for item in row["structures_ml"].split())
        assert {int(v): float(ml) for v, ml in structures.items()} == pytest.approx(
            {v: np.count_nonzero(written == v) * voxel_ml for v in (7, 44)}, abs=2e-4
        )
        # summary.md gives the structures' volumes, not the sum of masks that overlap
        line = next(line for line in (tmp_path / "out" / "summary.md").read_text().splitlines()
                    if line.startswith(f"| {Path(row['input']).name} |"))  # fmt: skip
        assert line.split(" | ")[5] == row["structures_ml"]


def test_a_manifest_names_inputs_prompts_and_outputs_relative_to_itself(tiny_base, tmp_path):
    pictures = _pictures(tmp_path / "data" / "images", count=2)
    (tmp_path / "data" / "p1.json").write_text(json.dumps([{"points": [[12, 14]]}]))
    rows = [
        {
            "input": "images/case0.png",
            "prompts": json.dumps([{"box": [5, 6, 25, 22]}]),
            "output": "first.png",
        },
        {"input": "images/case1.png", "prompts": "p1.json", "output": ""},
        {"input": "images/missing.png", "prompts": json.dumps([{"box": [1, 1, 5, 5]}]), "output": ""},
    ]
    with (tmp_path / "data" / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["input", "prompts", "output"])
        writer.writeheader()
        writer.writerows(rows)
    assert is_batch_source(tmp_path / "data" / "manifest.csv")
    code = main(["predict", str(tiny_base), str(tmp_path / "data" / "manifest.csv"), str(tmp_path / "out"),
                 "--device", "cpu"])  # fmt: skip
    assert code == 1
    summary = _summary(tmp_path / "out")
    assert [row["status"] for row in summary] == ["ok", "ok", "failed"] and "missing.png" in summary[2][
        "error"
    ]
    first = np.asarray(Image.open(tmp_path / "out" / "first.png"))
    assert np.array_equal(first, _alone(tiny_base, pictures[0], [Prompt(box=[5, 6, 25, 22])], tmp_path))
    second = np.asarray(Image.open(tmp_path / "out" / "case1.png"))
    assert np.array_equal(second, _alone(tiny_base, pictures[1], [Prompt(points=[[12, 14]])], tmp_path))


def test_batches_that_cannot_run_are_refused_before_the_model_loads(tmp_path):
    _pictures(tmp_path / "in", count=2)
    with pytest.raises(ValueError, match="no prompts"):
        collect_items(tmp_path / "in", tmp_path / "out")
    (tmp_path / "m.json").write_text(json.dumps([{"input": "in/case0.png", "box": [1, 2, 3, 4]}]))
    with pytest.raises(ValueError, match=r"unknown columns \['box'\]"):
        collect_items(tmp_path / "m.json", tmp_path / "out")
    (tmp_path / "m.json").write_text(json.dumps([{"input": "in/case0.png", "output": "x.png"},
                                                 {"input": "in/case1.png", "output": "x.png"}]))  # fmt: skip
    with pytest.raises(ValueError, match="would both be written to"):
        collect_items(tmp_path / "m.json", tmp_path / "out", prompts=[Prompt(box=[1, 1, 4, 4])])
    with pytest.raises(ValueError, match=r"no images \(PNG/JPEG/TIFF/BMP\) or volumes \(NIfTI"):
        collect_items(str(tmp_path / "in" / "*.nii.gz"), tmp_path / "out", prompts=[Prompt(box=[1, 1, 4, 4])])
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="a batch writes a folder"):
        collect_items(tmp_path / "in", tmp_path / "file", prompts=[Prompt(box=[1, 1, 4, 4])])
    glob_items = collect_items(
        str(tmp_path / "in" / "case*.png"), tmp_path / "out", [Prompt(box=[1, 1, 4, 4])]
    )
    assert [item.output.name for item in glob_items] == ["case0.png", "case1.png"]


def test_label_maps_pair_with_their_inputs_as_prepare_pairs_them(tmp_path):
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    images.mkdir()
    labels.mkdir()
    for name in ("liver_001_0000.nii.gz", "img0002.nii.gz", "same.nii.gz", "slice.png"):
        (images / name).write_bytes(b"")
    for name in ("liver_001.nii.gz", "label0002.nii.gz", "same.nii.gz", "slice_mask.png", "other.nii.gz"):
        (labels / name).write_bytes(b"")
    items = collect_items(images, tmp_path / "out", labels_dir=labels)
    assert {item.input.name: item.labels.name for item in items} == {
        "img0002.nii.gz": "label0002.nii.gz",  # BTCV's role prefixes
        "liver_001_0000.nii.gz": "liver_001.nii.gz",  # nnU-Net's channel suffix
        "same.nii.gz": "same.nii.gz",
        "slice.png": "slice_mask.png",
    }
    assert all(item.prompts is None for item in items)  # the prompts come from the label maps
    (images / "._same.nii.gz").write_bytes(b"")  # a macOS copy: neither an input nor a label map
    (labels / "._same.nii.gz").write_bytes(b"")
    assert len(collect_items(images, tmp_path / "out", labels_dir=labels)) == 4
    (images / "unlabelled.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no label map for 1 of 5 inputs \(unlabelled.nii.gz\)"):
        collect_items(images, tmp_path / "out", labels_dir=labels)
    (images / "unlabelled.nii.gz").unlink()
    (labels / "slice_seg.png").write_bytes(b"")  # a second map that pairs with slice.png as well
    with pytest.raises(ValueError, match="slice.png: 2 label maps pair with it by name"):
        collect_items(images, tmp_path / "out", labels_dir=labels)
    with pytest.raises(ValueError, match="that is the folder of the inputs"):
        collect_items(labels, tmp_path / "out", labels_dir=labels)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_missing_label_map_named_by_a_manifest_fails_that_input_alone(tiny_base, tmp_path):
    pairs = [_volume_with_labels(tmp_path, f"{name}.nii.gz", 0) for name in ("a", "b")]
    rows = [{"input": "images/a.nii.gz", "labels": "labels/a.nii.gz"},
            {"input": "images/b.nii.gz", "labels": "labels/gone.nii.gz"}]  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(rows))
    code = main(
        ["predict", str(tiny_base), str(tmp_path / "m.json"), str(tmp_path / "out"), "--device", "cpu"]
    )
    assert code == 1
    summary = {Path(row["input"]).name: row for row in _summary(tmp_path / "out")}
    assert summary["a.nii.gz"]["status"] == "ok" and (tmp_path / "out" / "a.nii.gz").exists()
    assert (
        summary["b.nii.gz"]["error"]
        == f"ValueError: label map {tmp_path / 'labels' / 'gone.nii.gz'}: no such file."
    )
    assert pairs[1][0].exists() and not (tmp_path / "out" / "b.nii.gz").exists()


@pytest.mark.ddp
def test_two_processes_share_the_inputs_and_write_one_summary(tiny_base, tmp_path):
    pictures = _pictures(tmp_path / "in", count=5)
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "-m", "msa_hf.cli",
               "predict", str(tiny_base), str(tmp_path / "in"), str(tmp_path / "out"), "--box", "5", "6", "25", "22"]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("5 of 5 inputs segmented") == 1  # one summary, from the main process
    summary = _summary(tmp_path / "out")
    assert [Path(row["input"]).name for row in summary] == [p.name for p in pictures]
    assert [row["process"] for row in summary] == ["0", "1", "0", "1", "0"]  # input i on process i mod 2
    for picture in pictures:
        written = np.asarray(Image.open(tmp_path / "out" / picture.name))
        assert np.array_equal(written, _alone(tiny_base, picture, [Prompt(box=[5, 6, 25, 22])], tmp_path))
    assert not list((tmp_path / "out").glob(".summary-part-*"))


def test_a_label_map_off_its_inputs_grid_fails_that_input_alone(tiny_base, tmp_path):
    pairs = [_volume_with_labels(tmp_path, f"{name}.nii.gz", 0) for name in ("a", "b")]
    # one slice fewer than its input, and half a slice off its lattice: on another grid (a label map on a part
    # of its input's grid would be placed on it, `test_slicer_segmentations`)
    small = np.zeros((20, 24, 5), np.uint8)
    small[4:8, 4:8, 1:3] = 7
    shifted = SCRAMBLED_AFFINE.copy()
    shifted[:3, 3] += 0.5 * SCRAMBLED_AFFINE[:3, 2]
    nib.save(nib.Nifti1Image(small, shifted), pairs[1][1])
    code = main(["predict", str(tiny_base), str(tmp_path / "images"), str(tmp_path / "out"),
                 "--prompts-from-labels", str(tmp_path / "labels"), "--device", "cpu"])  # fmt: skip
    assert code == 1
    rows = {Path(row["input"]).name: row for row in _summary(tmp_path / "out")}
    assert rows["a.nii.gz"]["status"] == "ok"
    # shapes in RAS+ order, read from the headers: the same as the volumes read in full
    from msa_hf.data.volumes import load_volume
    from msa_hf.inference.batch import _grid_shape

    expected = load_volume(pairs[1][1], is_label=True).array.shape
    assert (
        _grid_shape(pairs[1][1]) == expected
        and _grid_shape(pairs[1][0]) == load_volume(pairs[1][0]).array.shape
    )
    assert rows["b.nii.gz"]["status"] == "failed" and f"has shape {expected}" in rows["b.nii.gz"]["error"]
    from msa_hf.testing import write_dicom_series  # a DICOM series too, from its headers alone

    write_dicom_series(tmp_path / "series", np.zeros((5, 12, 16)))
    assert _grid_shape(tmp_path / "series") == load_volume(tmp_path / "series").array.shape


@pytest.mark.parametrize("use_depth_branch", [False, True])
def test_images_are_encoded_in_groups_and_decoded_as_alone(tmp_path, use_depth_branch):
    import torch

    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.inference.batch import BatchItem, predict_batch
    from msa_hf.testing import randomize_adapter_weights, randomize_weights, tiny_sam_kwargs

    config = SamAdapterConfig(**tiny_sam_kwargs(), use_depth_branch=use_depth_branch, num_slices=2)
    model = SamAdapterModel(config).eval()
    randomize_weights(model, seed=4)
    randomize_adapter_weights(model, seed=5)
    pictures = _pictures(tmp_path / "in", count=4)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not a png")
    inputs = [pictures[0], pictures[1], broken, pictures[2], pictures[3]]
    prompts = [Prompt(box=[5, 6, 25, 22]), Prompt(points=[[12, 14]])]  # a box, and a click's best of three
    items = [
        BatchItem(
            path, tmp_path / "out" / path.name, prompts, probabilities=tmp_path / "out" / f"{path.stem}.tif"
        )
        for path in inputs
    ]
    encoded: list[int] = []  # pictures per encoder call
    get_image_embeddings = model.get_image_embeddings

    def counting(pixel_values: torch.Tensor, **kwargs: object) -> torch.Tensor:
        encoded.append(
            len(pixel_values) // (2 if use_depth_branch else 1)
        )  # a picture is a window of D copies
        return get_image_embeddings(pixel_values, **kwargs)

    model.get_image_embeddings = counting
    rows = predict_batch(model, items, device="cpu", batch_size=2, show_progress=False)
    assert [row["status"] for row in rows] == ["ok", "ok", "failed", "ok", "ok"]
    assert encoded == [2, 1, 1]  # groups of two inputs: the broken one is skipped, its partner encoded alone
    model.get_image_embeddings = get_image_embeddings
    for path in pictures:
        alone = tmp_path / "alone" / path.name
        predict_file(model, path, alone, prompts, device="cpu", probabilities_path=alone.with_suffix(".tif"))
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "out" / path.name)), np.asarray(Image.open(alone))
        )
        with (
            Image.open(tmp_path / "out" / f"{path.stem}.tif") as batched,
            Image.open(alone.with_suffix(".tif")) as single,
        ):
            for page in range(2):  # each prompt's probability map, as when the image is segmented alone
                batched.seek(page)
                single.seek(page)
                np.testing.assert_allclose(np.asarray(batched), np.asarray(single), atol=1e-5)


def test_the_summary_keeps_what_each_input_noted(tmp_path):
    """An input whose masks paint over each other is noted in summary.csv's warnings column (and counted in
    summary.md); an input without notes leaves it empty."""
    from msa_hf.inference.batch import BatchItem, predict_batch, write_summary
    from msa_hf.testing import BoxFillSam

    for name in ("plain", "overlapping"):
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / f"{name}.png")
    items = [
        BatchItem(tmp_path / "plain.png", tmp_path / "out" / "plain.png", [Prompt(box=[2, 2, 10, 10])]),
        BatchItem(
            tmp_path / "overlapping.png",
            tmp_path / "out" / "overlapping.png",
            [Prompt(box=[2, 2, 12, 12]), Prompt(box=[8, 8, 16, 16])],
        ),
    ]
    rows = predict_batch(BoxFillSam(32), items, show_progress=False)
    text = write_summary(rows, tmp_path / "out")
    with (tmp_path / "out" / "summary.csv").open() as handle:
        written = {Path(row["input"]).name: row["warnings"] for row in csv.DictReader(handle)}
    assert written["plain.png"] == ""
    assert "prompt 1's mask (label 2) covers pixels of earlier masks" in written["overlapping.png"]
    assert text.startswith("2 of 2 inputs segmented; 1 with warnings")
