# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""How prompted structures are valued and named in what `predict` writes: prompts of one name are one
structure; in a DICOM-SEG or RT structure set every segment or ROI has a name of its own, within DICOM's 64
characters, and `predict` says where it labelled one otherwise than asked. A stand-in model whose masks are
the prompt boxes filled gives masks known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from msa_hf.data.label_tables import distinct_names
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import BoxFillSam


def test_names_shared_case_aside_each_get_their_value():
    assert distinct_names({1: "liver", 2: "Liver", 3: "spleen"}) == {1: "liver_1", 2: "Liver_2", 3: "spleen"}
    assert distinct_names({4: "a" * 70, 5: "b"}, max_bytes=64) == {4: "a" * 64, 5: "b"}
    # counted in bytes of UTF-8, and never cut inside a character (肝 is three bytes)
    assert distinct_names({6: "ä" * 40}, max_bytes=64) == {6: "ä" * 32}
    assert distinct_names({6: "a" + "肝" * 30}, max_bytes=64) == {6: "a" + "肝" * 21}
    # two names that only differ past the limit are one name once cut: the suffix stays inside the limit
    cut = distinct_names({7: "x" * 64 + "1", 12: "x" * 64 + "2"}, max_bytes=64)
    assert cut == {7: "x" * 62 + "_7", 12: "x" * 61 + "_12"}


@pytest.fixture
def series(block_series):
    return block_series


def test_prompts_of_one_name_are_one_structure(series, tmp_path):
    """A liver boxed on two slices by two prompts named alike (case and spaces aside) and no value is one
    structure, value 1 on both slices; a prompt named otherwise keeps its position's value."""
    from msa_hf.data.volumes import load_volume

    prompts = [
        Prompt(box=[2, 2, 19, 15], slice=2, name="Liver"),
        Prompt(box=[3, 3, 17, 14], slice=4, name="liver "),
        Prompt(box=[1, 1, 5, 5], slice=3, name="spleen"),
    ]
    summary = predict_file(BoxFillSam(32), series, tmp_path / "mask.nii.gz", prompts)
    assert [mask["label"] for mask in summary["masks"]] == [1, 1, 3]
    labels = load_volume(tmp_path / "mask.nii.gz", is_label=True).array
    per_slice = [sorted(int(v) for v in np.unique(labels[:, :, k]) if v) for k in range(labels.shape[2])]
    assert per_slice.count([1]) == 2 and per_slice.count([3]) == 1 and per_slice.count([]) == 3
    assert "warnings" not in summary


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_a_dicom_output_names_every_structure_apart(series, tmp_path, kind):
    """Two values both named "Liver" become "Liver_1" and "Liver_2"; an 80-character name is cut to DICOM's
    64; the summary's warnings say so, naming both."""
    import pydicom

    if kind == "seg":
        pytest.importorskip("highdicom")
    long_name = "a structure named at great length, " * 3
    prompts = [
        Prompt(box=[2, 2, 19, 15], slice=2, name="Liver", value=1),
        Prompt(box=[3, 3, 9, 9], slice=3, name="Liver", value=2),
        Prompt(box=[10, 4, 20, 14], slice=3, name=long_name, value=3),
    ]
    summary = predict_file(BoxFillSam(32), series, tmp_path / "out.dcm", prompts, dicom_output=kind)
    written = pydicom.dcmread(tmp_path / "out.dcm")
    if kind == "seg":
        labels = [str(item.SegmentLabel) for item in written.SegmentSequence]
    else:
        labels = [str(item.ROIName) for item in written.StructureSetROISequence]
    assert labels == ["Liver_1", "Liver_2", long_name[:64]]
    (note,) = summary["warnings"]
    assert "'Liver' (value 1) as 'Liver_1'" in note and "'Liver' (value 2) as 'Liver_2'" in note
    assert f"(value 3) as '{long_name[:64]}'" in note


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_names_beyond_ascii_are_kept_in_dicom_outputs(tmp_path, kind):
    """A structure named in German and Chinese, of a series whose headers are in Latin-1 (a patient named
    Müller): the DICOM output is UTF-8 and reads back with both names as they were."""
    import pydicom

    from msa_hf.testing import write_dicom_series

    if kind == "seg":
        pytest.importorskip("highdicom")
    volume = np.full((6, 20, 24), -1000.0, np.float32)
    latin = {"SpecificCharacterSet": "ISO_IR 100", "PatientName": "Müller^Jörg"}
    write_dicom_series(tmp_path / "series", volume, attributes=latin)
    prompt = Prompt(box=[2, 2, 19, 15], slice=2, name="Läsion 肝")
    predict_file(BoxFillSam(32), tmp_path / "series", tmp_path / "out.dcm", [prompt], dicom_output=kind)
    written = pydicom.dcmread(tmp_path / "out.dcm")
    structures = written.SegmentSequence if kind == "seg" else written.StructureSetROISequence
    label = structures[0].SegmentLabel if kind == "seg" else structures[0].ROIName
    assert (written.SpecificCharacterSet, label, str(written.PatientName)) == (
        "ISO_IR 192",
        "Läsion 肝",
        "Müller^Jörg",
    )
