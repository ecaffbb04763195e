# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The channel of multi-channel cases: `prepare --channel` reads it (by number or by name), the trained model
records it, and `predict` and the demo read the same one of a new case: a 4-D NIfTI's volume, or a case's
sequence file, by name where both sides name their channels."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from msa_hf.cli import main
from msa_hf.data import axial_slices, load_prepared, prepare_dataset
from msa_hf.data.channels import ChannelChoice, SeveralChannels, dataset_channel_names
from msa_hf.processing.processor import MsaProcessor
from msa_hf.testing import BoxFillSam

AFFINE = np.diag([0.9, 0.9, 3.0, 1.0])
DECATHLON_CHANNELS = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


def _four_d(path: Path, seed: int) -> np.ndarray:
    """A `(32, 28, 6, 4)` scan of four unlike channels (each its own noise and bright block) written to `path`."""
    rng = np.random.default_rng(seed)
    array = rng.normal(100, 20, (32, 28, 6, 4)).astype(np.float32)
    for channel in range(4):
        array[4 + 3 * channel : 16 + 2 * channel, 6 : 20 - channel, :, channel] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), path)
    return array


def _labels(path: Path) -> np.ndarray:
    labels = np.zeros((32, 28, 6), np.uint8)
    labels[6:16, 8:18, 1:5] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels, AFFINE), path)
    return labels


def test_a_channel_is_picked_by_name_where_both_sides_name_them_else_by_number():
    names = {0: "flair", 1: "t1", 2: "t1ce", 3: "t2"}
    assert (
        ChannelChoice.parse("2") == ChannelChoice(index=2) and ChannelChoice.parse(" FLAIR ").name == "FLAIR"
    )
    assert ChannelChoice.parse("T1CE").pick(names, 4, "case") == 2  # names compare case-insensitively
    assert ChannelChoice.parse("3").pick({}, 4, "case") == 3
    trained = ChannelChoice(0, "flair", origin="the model")
    assert (
        trained.pick({0: "t1c", 1: "t1n", 2: "flair", 3: "t2w"}, 4, "case") == 2
    )  # the name, not the number
    assert trained.pick({}, 4, "case") == 0  # a case that names nothing: the number
    with pytest.raises(
        ValueError, match=r"trained on channel 3, which this case of 2 channels \(0 to 1\) does not"
    ):
        ChannelChoice(3, origin="the model").pick({}, 2, "case")
    with pytest.raises(
        ValueError, match=r"trained on channel 0 \(flair\).*0 = t1c, 1 = t1n, 2 = t2f, 3 = t2w"
    ):
        trained.pick({0: "t1c", 1: "t1n", 2: "t2f", 3: "t2w"}, 4, "BraTS-GLI-00000-000")
    with pytest.raises(ValueError, match=r"no channel named 'dwi' \(--channel\); its channels are 0 = flair"):
        ChannelChoice.parse("dwi").pick(names, 4, "case")
    with pytest.raises(ValueError, match="nothing names this case's 4 channels.*give its number, 0 to 3"):
        ChannelChoice.parse("flair").pick({}, 4, "case")
    with pytest.raises(ValueError, match=r"channel 4 \(--channel\) does not exist; its channels are 0 to 3"):
        ChannelChoice.parse("4").pick({}, 4, "case")
    with pytest.raises(ValueError, match="channels count from 0"):
        ChannelChoice.parse("-1")


def test_the_decathlon_and_nnunet_name_channels_in_dataset_json(tmp_path):
    (tmp_path / "msd" / "imagesTs").mkdir(parents=True)
    (tmp_path / "msd" / "dataset.json").write_text(json.dumps({"modality": DECATHLON_CHANNELS, "labels": {}}))
    assert dataset_channel_names(tmp_path / "msd" / "imagesTs" / "BRATS_485.nii.gz") == {
        0: "FLAIR", 1: "T1w", 2: "t1gd", 3: "T2w"
    }  # fmt: skip
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "ADC"}}))
    assert dataset_channel_names(tmp_path / "v2" / "case.nii.gz") == {0: "T2", 1: "ADC"}
    assert dataset_channel_names(tmp_path / "elsewhere" / "case.nii.gz") == {}


def test_the_processor_keeps_the_channel_and_refuses_a_bad_one(tmp_path):
    processor = MsaProcessor(64, 16, channel=3, channel_name="T2w")
    processor.save_pretrained(tmp_path)
    loaded = MsaProcessor.from_pretrained(tmp_path)
    assert (loaded.channel, loaded.channel_name) == (3, "T2w")
    assert loaded.channel_choice() == ChannelChoice(3, "T2w", origin="the model")
    assert MsaProcessor(64, 16).channel_choice() is None
    with pytest.raises(ValueError, match="a channel's number"):
        MsaProcessor(64, 16, channel=-1)
    with pytest.raises(ValueError, match="the name of `channel`"):
        MsaProcessor(64, 16, channel_name="flair")


def test_a_decathlon_dataset_trains_on_a_named_channel_and_predict_reads_it_in_a_new_case(
    tiny_base, tmp_path, capsys
):
    """`prepare --channel t2w` on a Decathlon layout reads T2w (channel 3) and records it; a model saved with
    that record reads channel 3 of a 4-D test case, as if given that channel alone; `--channel` reads another,
    and a model that records none refuses the 4-D case, listing its channels by name."""
    from msa_hf.training.config import TrainConfig
    from msa_hf.training.datasets import training_channel
    from msa_hf.training.job import run_training

    source = tmp_path / "Task01_BrainTumour"
    (source / "imagesTr").mkdir(parents=True)
    (source / "dataset.json").write_text(
        json.dumps({"modality": DECATHLON_CHANNELS, "labels": {"0": "background", "1": "tumour"}})
    )
    scans = {f"BRATS_00{k}": _four_d(source / "imagesTr" / f"BRATS_00{k}.nii.gz", k) for k in range(3)}
    labels = {case: _labels(source / "labelsTr" / f"{case}.nii.gz") for case in scans}
    report = prepare_dataset(
        source, tmp_path / "prepared", split=(0.4, 0.3, 0.3), channel="t2w", keep_empty_slices=True
    )
    assert (report.channel, report.channel_name) == (3, "T2w") and "Read channel 3 (T2w)" in report.summary()
    rows = [row for split in load_prepared(tmp_path / "prepared").values() for row in split]
    assert rows and all(
        np.array_equal(np.asarray(row["image"]), axial_slices(scans[row["case_id"]][..., 3])[row["slice"]])
        and np.array_equal(np.asarray(row["label"]), axial_slices(labels[row["case_id"]])[row["slice"]])
        for row in rows
    )
    assert training_channel(SimpleNamespace(dataset=str(tmp_path / "prepared"))) == (3, "T2w")
    config = TrainConfig(base=str(tiny_base), dataset=str(tmp_path / "prepared"), output_dir=str(tmp_path / "run"),
                         steps=1, batch_size=2, eval_every=100, log_with="none", evaluate_test=False)  # fmt: skip
    run_training(config)  # the model it saves reads T2w, and its record says so
    model_folder = tmp_path / "run" / "model"
    assert MsaProcessor.from_pretrained(model_folder).channel_choice() == ChannelChoice(3, "T2w", "the model")
    assert json.loads((tmp_path / "run" / "train_result.json").read_text())["channel"] == "3 (T2w)"
    test_case = _four_d(source / "imagesTs" / "BRATS_485.nii.gz", 7)
    for channel in (1, 3):  # each channel alone, as a 3-D volume
        nib.save(nib.Nifti1Image(test_case[..., channel], AFFINE), tmp_path / f"alone-{channel}.nii.gz")
    box = ["--slice", "3", "--box", "4", "4", "24", "20"]

    def probabilities(model: Path, scan: Path, name: str, *options: str) -> np.ndarray:
        out = tmp_path / name
        assert main(["predict", str(model), str(scan), str(out / "mask.nii.gz"), *box,
                     "--save-probabilities", str(out / "p.nii.gz"), *options]) == 0  # fmt: skip
        return nib.load(out / "p.nii.gz").get_fdata()

    read = probabilities(model_folder, source / "imagesTs" / "BRATS_485.nii.gz", "model's")
    assert "channel 3 (T2w) of the 4-D input" in capsys.readouterr().out
    np.testing.assert_array_equal(read, probabilities(model_folder, tmp_path / "alone-3.nii.gz", "alone-3"))
    asked = probabilities(model_folder, source / "imagesTs" / "BRATS_485.nii.gz", "asked", "--channel", "T1w")
    np.testing.assert_array_equal(asked, probabilities(model_folder, tmp_path / "alone-1.nii.gz", "alone-1"))
    assert not np.array_equal(read, asked)  # the channels give other answers: which one was read matters
    capsys.readouterr()
    assert main(["predict", str(tiny_base), str(source / "imagesTs" / "BRATS_485.nii.gz"),
                 str(tmp_path / "refused.nii.gz"), *box]) == 2  # fmt: skip
    said = capsys.readouterr().err
    assert "4-D image of 4 channels (0 = FLAIR, 1 = T1w, 2 = t1gd, 3 = T2w)" in said and "--channel" in said
    assert not (tmp_path / "refused.nii.gz").exists()


def _brats_case(folder: Path, case_id: str, separator: str, sequences: list[str]) -> None:
    for index, name in enumerate(sequences):
        nib.save(nib.Nifti1Image(np.full((24, 20, 6), 10.0 * index, np.float32), AFFINE),
                 _made(folder / case_id) / f"{case_id}{separator}{name}.nii.gz")  # fmt: skip
    labels = np.zeros((24, 20, 6), np.uint8)
    labels[5:15, 4:12, 1:4] = 1
    nib.save(nib.Nifti1Image(labels, AFFINE), folder / case_id / f"{case_id}{separator}seg.nii.gz")


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _summary_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_in_place_brats_reads_the_sequence_the_model_was_trained_on_by_name(tmp_path, serve_stand_in, capsys):
    """Re-segmenting BraTS in place reads each case's file of the model's sequence (t1ce, channel 2 of 2021's
    names); BraTS 2023 names its sequences otherwise, so a FLAIR model's cases fail saying so, each, until
    `--channel t2f` names 2023's FLAIR."""
    brats_2021, brats_2023 = tmp_path / "brats2021", tmp_path / "brats2023"
    for case_id in ("BraTS2021_00000", "BraTS2021_00002"):
        _brats_case(brats_2021, case_id, "_", ["flair", "t1", "t1ce", "t2"])
    _brats_case(brats_2023, "BraTS-GLI-00000-000", "-", ["t1c", "t1n", "t2f", "t2w"])

    serve_stand_in(BoxFillSam(24), channel=ChannelChoice(2, "t1ce", origin="the model"))
    assert (
        main(
            ["predict", "m", str(brats_2021), str(tmp_path / "out"), "--prompts-from-labels", str(brats_2021)]
        )
        == 0
    )
    assert [Path(row["input"]).name for row in _summary_rows(tmp_path / "out")] == [
        "BraTS2021_00000_t1ce.nii.gz", "BraTS2021_00002_t1ce.nii.gz"
    ]  # fmt: skip
    assert all(row["status"] == "ok" for row in _summary_rows(tmp_path / "out"))

    serve_stand_in(BoxFillSam(24), channel=ChannelChoice(0, "flair", origin="the model"))
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                "m",
                str(brats_2023),
                str(tmp_path / "out-2023"),
                "--prompts-from-labels",
                str(brats_2023),
            ]
        )
        == 1
    )
    (row,) = _summary_rows(tmp_path / "out-2023")
    assert row["status"] == "failed" and "trained on channel 0 (flair)" in row["error"]
    assert "0 = t1c, 1 = t1n, 2 = t2f, 3 = t2w" in row["error"] and "--channel" in row["error"]
    assert main(["predict", "m", str(brats_2023), str(tmp_path / "out-t2f"), "--prompts-from-labels", str(brats_2023),
                 "--channel", "t2f"]) == 0  # fmt: skip
    (row,) = _summary_rows(tmp_path / "out-t2f")
    assert row["status"] == "ok" and Path(row["input"]).name == "BraTS-GLI-00000-000-t2f.nii.gz"


def test_the_demo_reads_the_model_s_channel_of_a_4d_upload(tiny_base, tmp_path):
    from msa_hf import SamAdapterModel
    from msa_hf.data.volumes import load_nifti
    from msa_hf.demo.sessions import DemoSession, VolumeSession

    scan = tmp_path / "scan.nii.gz"
    _four_d(scan, 3)
    model = SamAdapterModel.from_pretrained(tiny_base)
    volume = VolumeSession(
        [str(scan)], DemoSession(model, channel=ChannelChoice(2, origin="the model"))
    ).volume
    np.testing.assert_array_equal(volume.array, load_nifti(scan, channel=2).array)
    # a model of one-channel cases: the page is told the channels to offer, without the server's folder
    with pytest.raises(
        SeveralChannels, match=r"^the file holds 4 channels \(0, 1, 2, 3\); choose"
    ) as offered:
        VolumeSession([str(scan)], DemoSession(model))
    assert offered.value.choices() == [("0", 0), ("1", 1), ("2", 2), ("3", 3)]
    # the visitor's choice, over the model's own
    chosen = VolumeSession(
        [str(scan)],
        DemoSession(model, channel=ChannelChoice(2, origin="the model")),
        channel=ChannelChoice(1),
    )
    np.testing.assert_array_equal(chosen.volume.array, load_nifti(scan, channel=1).array)
    chosen.close()


def test_the_demo_offers_a_4d_upload_s_channels_by_name_and_opens_the_one_chosen(tiny_base, tmp_path):
    """The page's chooser: a Decathlon scan read where it lies, whose dataset.json names its sequences, is
    offered by them, and the one chosen opens (status and slices). An upload arrives without its dataset.json:
    its channels are numbered (the browser test in test_space.py)."""
    from msa_hf import SamAdapterModel
    from msa_hf.demo import app

    (tmp_path / "msd" / "imagesTs").mkdir(parents=True)
    scan = tmp_path / "msd" / "imagesTs" / "scan.nii.gz"
    _four_d(scan, 3)
    (tmp_path / "msd" / "dataset.json").write_text(
        json.dumps({"modality": {"0": "FLAIR", "1": "T1w", "2": "T1gd", "3": "T2w"}})
    )
    demo = app.build_demo(SamAdapterModel.from_pretrained(tiny_base))
    upload = next(fn for fn in demo.fns.values() if fn.fn.__name__ == "upload_volume").fn
    choose = next(fn for fn in demo.fns.values() if fn.fn.__name__ == "choose_channel").fn
    volume, _, _, status, _, chooser = upload(None, [str(scan)], "", "auto")
    assert volume is None and "4 channels (0 = FLAIR, 1 = T1w, 2 = T1gd, 3 = T2w)" in status
    assert chooser["visible"] and chooser["choices"][3] == ("3 = T2w", "3")
    volume, _, view, status, _, chooser = choose(None, [str(scan)], "", None, "auto", "3")
    try:
        assert "channel T2w" in status and view is not None and chooser == {"__type__": "update"}
        from msa_hf.data.volumes import load_nifti

        np.testing.assert_array_equal(volume.volume.array, load_nifti(scan, channel=3).array)
    finally:
        volume.close()


def test_the_volume_api_reads_the_channel_it_is_given(tmp_path):
    """`/segment_volume`'s `channel`: a ball bright in channel 2 alone is segmented from channel 2, and from
    channel 0 nothing is."""
    from msa_hf.data.volumes import axial_slices, load_volume
    from msa_hf.demo.sessions import DemoSession
    from msa_hf.testing import BrightInBoxSam, sphere_volume

    ball = sphere_volume(shape=(8, 32, 32), centre=(4, 15, 16), radius=4.0)
    canonical = np.transpose(ball, (2, 1, 0))[:, ::-1, :]  # display slices -> RAS voxels
    channels = np.stack(
        [np.full(canonical.shape, -100.0), np.zeros(canonical.shape), np.where(canonical, 900.0, -100.0)], -1
    )
    nib.save(nib.Nifti1Image(channels.astype(np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    rows, cols = np.nonzero(ball[4])
    box = [float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())]
    session = DemoSession(BrightInBoxSam(32))
    masks = {}
    for channel in (0, 2):
        path, _ = session.segment_volume(
            [str(tmp_path / "scan.nii.gz")], 4, [], box, channel=ChannelChoice(channel)
        )
        masks[channel] = axial_slices(load_volume(path, is_label=True).array)[4] == 1
    np.testing.assert_array_equal(masks[2], ball[4])
    assert not masks[0].any()
