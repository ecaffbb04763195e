"""The one output writer: complete or not at all, never over an input; the data-loss paths it closes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from msa_hf.cli import main as cli
from msa_hf.data import prepare_dataset
from msa_hf.output_files import OutputError, atomic_file, atomic_folder, check_not_an_input


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_write_leaves_the_earlier_output_and_no_staging(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    with pytest.raises(RuntimeError), atomic_folder(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert _tree(out) == {"old.txt": b"kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_folder(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("whole")
    assert _tree(out) == {"new.txt": b"whole"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(FileExistsError, match="--overwrite"), atomic_folder(out):
        pass

    target = tmp_path / "mask.png"
    target.write_bytes(b"before")
    with pytest.raises(RuntimeError), atomic_file(target) as staging:
        assert staging.name.endswith(".png") and staging.parent == tmp_path
        staging.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"before"
    with atomic_file(target) as staging:
        staging.write_bytes(b"after")
    assert target.read_bytes() == b"after"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png", "out"]


def test_outputs_that_are_inside_or_hold_an_input_are_refused(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for output, reason in (
        (source, "is the input"),
        (source / "prepared", "lies inside the input"),
        (tmp_path, "contains the input"),
    ):
        with pytest.raises(OutputError, match=reason):
            check_not_an_input(output, [source])
    check_not_an_input(tmp_path / "elsewhere", [source])


def _png_source(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        image = rng.integers(0, 255, (24, 24)).astype(np.uint8)
        label = np.zeros((24, 24), np.uint8)
        label[5:15, 5:15] = 1
        Image.fromarray(image).save(folder / f"case{index}.png")
        Image.fromarray(label).save(folder / f"case{index}_mask.png")
    return _tree(folder)


def test_prepare_into_its_own_source_keeps_the_source(tmp_path, capsys):
    source = tmp_path / "src"
    before = _png_source(source)
    assert cli(["prepare", str(source), str(source), "--overwrite"]) != 0
    assert "is the input" in capsys.readouterr().err
    assert _tree(source) == before
    with pytest.raises(OutputError):
        prepare_dataset(source, source / "inside", overwrite=True)
    assert _tree(source) == before


def test_prepare_from_a_missing_folder_keeps_the_existing_dataset(tmp_path, capsys):
    source = tmp_path / "src"
    _png_source(source)
    prepare_dataset(source, tmp_path / "out", split=(0.5, 0.25, 0.25))
    dataset = _tree(tmp_path / "out")
    assert any(name.endswith(".parquet") for name in dataset)
    assert cli(["prepare", str(tmp_path / "missing"), str(tmp_path / "out"), "--overwrite"]) != 0
    assert _tree(tmp_path / "out") == dataset
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no staging left behind


def test_predict_refuses_to_write_its_mask_over_the_input(tmp_path, capsys):
    picture = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(picture)
    before = picture.read_bytes()
    code = cli(["predict", "tiny", str(picture), str(picture), "--box", "2", "2", "20", "20"])
    assert code != 0
    assert "is the input" in capsys.readouterr().err
    assert picture.read_bytes() == before


def test_evaluate_writes_whole_files_beside_the_users_and_never_into_the_dataset(
    tiny_base, disk_dataset, tmp_path, capsys
):
    out = tmp_path / "scores"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "results.json").write_text("an earlier evaluation")
    assert cli(["evaluate", str(tiny_base), "--dataset", str(disk_dataset), "--protocols", "box",
                "--output-dir", str(out)]) == 2  # fmt: skip
    assert "results.json exists; pass --overwrite" in capsys.readouterr().err
    assert _tree(out) == {"notes.txt": b"mine", "results.json": b"an earlier evaluation"}  # untouched
    assert cli(["evaluate", str(tiny_base), "--dataset", str(disk_dataset), "--protocols", "box",
                "--output-dir", str(out), "--overwrite"]) == 0  # fmt: skip
    files = _tree(out)
    assert files["notes.txt"] == b"mine" and b'"tables"' in files["results.json"]
    assert {"results.md", "cases_box.csv", "overlays.png"} <= set(files)
    assert not [name for name in files if ".partial-" in name]  # no staging left behind
    dataset = _tree(disk_dataset)
    assert cli(["evaluate", str(tiny_base), "--dataset", str(disk_dataset), "--protocols", "box",
                "--output-dir", str(disk_dataset / "scores")]) == 2  # fmt: skip
    assert "lies inside the input" in capsys.readouterr().err
    assert _tree(disk_dataset) == dataset


def test_predict_replaces_an_existing_mask_only_when_asked(tmp_path, capsys):
    picture = np.full((40, 40), 30, np.uint8)
    picture[10:30, 10:30] = 200
    Image.fromarray(picture).save(tmp_path / "scan.png")
    mine = tmp_path / "mask.png"  # say, the user's own annotation
    Image.fromarray(np.ones((40, 40), np.uint8)).save(mine)
    before = mine.read_bytes()
    box = ["--box", "8", "8", "32", "32", "--device", "cpu"]
    assert cli(["predict", "tiny", str(tmp_path / "scan.png"), str(mine), *box]) == 2
    assert "mask.png exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert mine.read_bytes() == before
    assert cli(["predict", "tiny", str(tmp_path / "scan.png"), str(mine), *box, "--overwrite"]) == 0
    assert mine.read_bytes() != before and set(np.unique(np.asarray(Image.open(mine)))) <= {0, 1}


def test_predict_over_many_inputs_refuses_a_folder_holding_their_masks(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((32, 32), 90, np.uint8)).save(tmp_path / "in" / f"{name}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"an earlier mask")
    (out / "notes.txt").write_text("mine")
    command = [
        "predict",
        "tiny",
        str(tmp_path / "in"),
        str(out),
        "--box",
        "4",
        "4",
        "20",
        "20",
        "--device",
        "cpu",
    ]
    assert cli(command) == 2
    assert f"{out / 'b.png'} exists; pass --overwrite" in capsys.readouterr().err
    assert _tree(out) == {"b.png": b"an earlier mask", "notes.txt": b"mine"}  # nothing written
    assert cli([*command, "--overwrite"]) == 0
    files = _tree(out)
    assert files["notes.txt"] == b"mine" and files["b.png"] != b"an earlier mask"
    assert {"a.png", "summary.csv", "summary.md"} <= set(files)
