"""The bad-input corpus: inputs an adversarial or careless user gives every entry point, and what must come of
each. `tests/test_bad_inputs.py` runs the corpus in a child process with a memory limit and checks every case.

Each case builds its inputs under `<case folder>/in` (protected: nothing may change there) and writes its
outputs under `<case folder>/out`. Outcome classes:

- `error`: a non-zero exit (or, for the Space's functions, a `ValueError` the page shows) with one clear
  message that names the input (`mentions`), and no traceback;
- `handled`: it works (exit 0) and the case's own check of the result passes.

Anything else is a failure: `traceback` (an exception escaped, or the message admits an unexpected error),
`silent` (exit 0 where an error was due, or a failed check), `lost` (an input or an earlier output changed),
`half-written` (a staging file was left behind) or `blow-up` (MemoryError).

Run directly (`python tests/bad_inputs.py RESULTS.json`) it writes every case's outcome as JSON.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class Case:
    """One bad input: `build(folder)` writes the inputs and returns the argv of `entry` (a CLI command), or
    a callable for the Space's functions; `check(folder, output)` judges a handled case."""

    entry: str
    name: str
    build: Callable[[Path], list[str] | Callable[[], Any]]
    expect: str = "error"
    mentions: tuple[str, ...] = ()
    check: Callable[[Path, str], bool] | None = None
    protect_out: bool = False  # an earlier output in out/ must survive an error too


CASES: list[Case] = []


def case(entry: str, name: str, expect: str = "error", mentions: tuple[str, ...] = (), **kwargs: Any):
    def register(build: Callable) -> Callable:
        CASES.append(Case(entry, name, build, expect, mentions, **kwargs))
        return build

    return register


# ------------------------------------------------------------------------------------------------ inputs
def png_source(folder: Path, count: int = 6, name: str = "src") -> Path:
    """`count` 2-D cases (case<i>.png + case<i>_mask.png, a bright square labelled 1) and a label table."""
    source = folder / "in" / name
    source.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.integers(0, 60, (32, 32)).astype(np.uint8)
        label = np.zeros((32, 32), np.uint8)
        label[8 + index % 4 : 20, 6:18] = 1
        image[label > 0] = 200
        Image.fromarray(image).save(source / f"case{index}.png")
        Image.fromarray(label).save(source / f"case{index}_mask.png")
    (source / "labels.txt").write_text("1 square\n")
    return source


def nifti_source(folder: Path, count: int = 3, label_values: Any = None, label_dtype: Any = np.uint8) -> Path:
    """`count` Decathlon-style NIfTI cases; `label_values` replaces label 1 of the first case."""
    import nibabel as nib

    from msa_hf.testing import write_nifti_case

    source = folder / "in" / "vols"
    for index in range(count):
        write_nifti_case(source, f"case{index}", seed=index)
    if label_values is not None:
        path = source / "labelsTr" / "case0.nii.gz"
        labels = np.asarray(nib.load(path).dataobj).astype(label_dtype)
        labels[labels == 1] = label_values
        nib.save(nib.Nifti1Image(labels, np.diag([0.7, 0.7, 3.0, 1.0])), path)
    return source


def nifti_bomb(path: Path, shape: tuple[int, ...] = (1200, 1200, 1200)) -> Path:
    """A tiny .nii.gz whose header claims `shape` voxels of float32."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    raw = header.binaryblock + b"\x00" * 4 + b"\x00" * 64
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw))
    return path


def picture(
    folder: Path, name: str = "x.png", shape: tuple[int, ...] = (48, 48), dtype: Any = np.uint8
) -> Path:
    path = folder / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full(shape, 40, dtype)
    image[10:30, 12:34] = 200 if dtype == np.uint8 else 50_000
    Image.fromarray(image).save(path)
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width` x `height` pixels (the pixel data is a few bytes)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


_SHARED: dict[str, Path] = {}


def prepared(folder: Path) -> Path:
    """A prepared 2-D dataset under in/dataset (built once per corpus run, copied per case)."""
    if "dataset" not in _SHARED:
        from msa_hf.data import prepare_dataset

        shared = Path(tempfile.mkdtemp(prefix="corpus-shared-"))
        prepare_dataset(png_source(shared, count=8), shared / "dataset", split=(0.5, 0.25, 0.25))
        _SHARED["dataset"] = shared / "dataset"
    target = folder / "in" / "dataset"
    shutil.copytree(_SHARED["dataset"], target)
    return target


def model_folder(folder: Path) -> Path:
    """The shipped base saved under in/model (a model folder a user may damage)."""
    from msa_hf import TINY_BASE

    target = folder / "in" / "model"
    shutil.copytree(TINY_BASE, target)
    return target


def out(folder: Path, name: str = "") -> str:
    return str(folder / "out" / name) if name else str(folder / "out")


# ------------------------------------------------------------------------------------------------ prepare
@case("prepare", "source folder does not exist", mentions=("missing",))
def _(f):
    return ["prepare", str(f / "in" / "missing"), "--output-dir", out(f)]


@case("prepare", "source is a file, not a folder", mentions=("x.png",))
def _(f):
    return ["prepare", str(picture(f)), "--output-dir", out(f)]


@case("prepare", "source folder is empty", mentions=("empty",))
def _(f):
    (f / "in" / "empty").mkdir(parents=True)
    return ["prepare", str(f / "in" / "empty"), "--output-dir", out(f)]


@case("prepare", "output is the source itself, with --overwrite", mentions=("is the input",))
def _(f):
    source = png_source(f)
    return ["prepare", str(source), "--output-dir", str(source), "--overwrite"]


@case("prepare", "output inside the source", mentions=("lies inside the input",))
def _(f):
    source = png_source(f)
    return ["prepare", str(source), "--output-dir", str(source / "prepared")]


@case("prepare", "output holds the source", mentions=("contains the input",))
def _(f):
    png_source(f)
    return ["prepare", str(f / "in" / "src"), "--output-dir", str(f / "in"), "--overwrite"]


@case(
    "prepare",
    "missing source over an existing dataset, with --overwrite",
    mentions=("missing",),
    protect_out=True,
)
def _(f):
    from msa_hf.data import prepare_dataset

    prepare_dataset(png_source(f, name="other"), f / "out", split=(0.5, 0.25, 0.25))
    return ["prepare", str(f / "in" / "missing"), "--output-dir", out(f), "--overwrite"]


@case("prepare", "existing non-empty output without --overwrite", mentions=("--overwrite",), protect_out=True)
def _(f):
    (f / "out").mkdir()
    (f / "out" / "keep.txt").write_text("mine")
    return ["prepare", str(png_source(f)), "--output-dir", out(f)]


def _cases_written(folder: Path) -> int:
    return sum(json.loads((folder / "out" / "prepare_report.json").read_text())["cases"].values())


def _report_names(*words: str) -> Callable[[Path, str], bool]:
    def check(folder: Path, output: str) -> bool:
        report = json.loads((folder / "out" / "prepare_report.json").read_text())
        text = json.dumps([report["skipped_cases"], report["warnings"]])
        return all(word in text for word in words)

    return check


@case("prepare", "an image without its mask", expect="handled", check=_report_names("case9"))
def _(f):
    source = png_source(f)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(source / "case9.png")
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "a mask of another size than its image", expect="handled", check=_report_names("case0"))
def _(f):
    source = png_source(f)
    Image.fromarray(np.ones((20, 24), np.uint8)).save(source / "case0_mask.png")
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "a corrupt PNG (random bytes)", expect="handled", check=_report_names("case1"))
def _(f):
    source = png_source(f)
    (source / "case1.png").write_bytes(os.urandom(300))
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "a truncated PNG", expect="handled", check=_report_names("case2"))
def _(f):
    source = png_source(f)
    data = (source / "case2.png").read_bytes()
    (source / "case2.png").write_bytes(data[: len(data) // 2])
    return ["prepare", str(source), "--output-dir", out(f)]


@case(
    "prepare", "a PNG header claiming 100000 x 100000 pixels", expect="handled", check=_report_names("case3")
)
def _(f):
    source = png_source(f)
    png_claiming(source / "case3.png", 100_000, 100_000)
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "a mask that is RGB colours, not labels", expect="handled", check=_report_names("case4"))
def _(f):
    source = png_source(f)
    colours = np.zeros((32, 32, 3), np.uint8)
    colours[5:15, 5:15] = (255, 0, 0)
    colours[16:25, 16:25] = (0, 255, 0)
    colours[0:4, 0:4] = (10, 20, 30)
    Image.fromarray(colours).save(source / "case4_mask.png")
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "a file name that is not UTF-8", expect="handled", check=lambda f, o: _cases_written(f) == 7)
def _(f):
    source = png_source(f)
    name = os.fsencode(str(source)) + b"/caf\xe9.png"
    with open(name, "wb") as handle:
        handle.write((source / "case0.png").read_bytes())
    with open(os.fsencode(str(source)) + b"/caf\xe9_mask.png", "wb") as handle:
        handle.write((source / "case0_mask.png").read_bytes())
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "a folder named like an image", expect="handled")
def _(f):
    source = png_source(f)
    (source / "folder.png").mkdir()
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "every case is bad", mentions=("no usable case",))
def _(f):
    source = f / "in" / "src"
    source.mkdir(parents=True)
    for index in range(3):
        (source / f"case{index}.png").write_bytes(b"not a png")
        (source / f"case{index}_mask.png").write_bytes(b"not a png")
    return ["prepare", str(source), "--output-dir", out(f)]


@case(
    "prepare",
    "one case: too few for validation and test",
    expect="handled",
    check=_report_names("validation split is empty"),
)
def _(f):
    source = png_source(f, count=1)
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "label table that is not valid JSON", mentions=("labels.json",))
def _(f):
    source = png_source(f)
    (source / "labels.txt").unlink()
    (source / "labels.json").write_text("{1: liver")
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "label table with a list as a name", mentions=("labels.json", "liver"))
def _(f):
    source = png_source(f)
    (source / "labels.txt").unlink()
    (source / "labels.json").write_text(json.dumps({"1": ["liver"]}))
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "label table with a null name", mentions=("labels.json",))
def _(f):
    source = png_source(f)
    (source / "labels.txt").unlink()
    (source / "labels.json").write_text(json.dumps({"1": None}))
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "region-based label table with a region of names", mentions=("dataset.json", "tumor core"))
def _(f):
    source = png_source(f)
    (source / "labels.txt").unlink()
    (source / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "tumor core": ["core", "enh"]}})
    )
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "--remap-labels without a target", mentions=("--remap-labels", "255"))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--remap-labels", "255"]


@case("prepare", "--remap-labels to a negative value", mentions=("remap", "-1"))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--remap-labels", "255=-1"]


@case("prepare", "label table naming two values alike", mentions=("labels.json", "liver"))
def _(f):
    source = png_source(f)
    (source / "labels.txt").unlink()
    (source / "labels.json").write_text(json.dumps({"1": "liver", "2": "liver"}))
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "label table with a non-integer value", mentions=("labels.json", "one"))
def _(f):
    source = png_source(f)
    (source / "labels.txt").unlink()
    (source / "labels.json").write_text(json.dumps({"one": "liver"}))
    return ["prepare", str(source), "--output-dir", out(f)]


@case(
    "prepare", "a CSV label table without LabelValue and Name columns", mentions=("colours.csv", "LabelValue")
)
def _(f):
    source = png_source(f)
    (source / "colours.csv").write_text("value,structure\n1,square\n")
    return ["prepare", str(source), "--output-dir", out(f), "--label-table", str(source / "colours.csv")]


@case("prepare", "a CSV colour table with a label value that is no integer", mentions=("colours.csv", "1.5"))
def _(f):
    source = png_source(f)
    (source / "colours.csv").write_text("LabelValue,Name,Color_R,Color_G,Color_B\n1.5,square,255,0,0\n")
    return ["prepare", str(source), "--output-dir", out(f), "--label-table", str(source / "colours.csv")]


@case("prepare", "--label-table file does not exist", mentions=("nowhere.json",))
def _(f):
    return [
        "prepare",
        str(png_source(f)),
        "--output-dir",
        out(f),
        "--label-table",
        str(f / "in" / "nowhere.json"),
    ]


@case("prepare", "a mask value the label table does not name", expect="handled", check=_report_names("[7]"))
def _(f):
    source = png_source(f)
    label = np.array(Image.open(source / "case0_mask.png"))
    label[0:3, 0:3] = 7
    Image.fromarray(label).save(source / "case0_mask.png")
    (source / "labels.txt").unlink()
    (source / "labels.json").write_text(json.dumps({"1": "square"}))
    return ["prepare", str(source), "--output-dir", out(f)]


@case(
    "prepare", "label values above 65535 in a NIfTI label map", expect="handled", check=_report_names("70000")
)
def _(f):
    return ["prepare", str(nifti_source(f, label_values=70000, label_dtype=np.int32)), "--output-dir", out(f)]


@case("prepare", "negative label values in a NIfTI label map", expect="handled", check=_report_names("-3"))
def _(f):
    return ["prepare", str(nifti_source(f, label_values=-3, label_dtype=np.int16)), "--output-dir", out(f)]


@case("prepare", "fractional label values in a NIfTI label map", expect="handled", check=_report_names("0.5"))
def _(f):
    return ["prepare", str(nifti_source(f, label_values=0.5, label_dtype=np.float32)), "--output-dir", out(f)]


@case("prepare", "a 82-byte .nii.gz claiming 1200^3 voxels", expect="handled", check=_report_names("case0"))
def _(f):
    source = nifti_source(f)
    nifti_bomb(source / "imagesTr" / "case0_0000.nii.gz")
    return ["prepare", str(source), "--output-dir", out(f)]


@case(
    "prepare", "a label map with another shape than its image", expect="handled", check=_report_names("case1")
)
def _(f):
    import nibabel as nib

    source = nifti_source(f)
    nib.save(
        nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), source / "labelsTr" / "case1.nii.gz"
    )
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "NaN voxels in a NIfTI image", expect="handled", check=_report_names("case2"))
def _(f):
    import nibabel as nib

    source = nifti_source(f, count=5)
    path = source / "imagesTr" / "case2_0000.nii.gz"
    image = np.asarray(nib.load(path).dataobj).astype(np.float32)
    image[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(image, np.diag([0.7, 0.7, 3.0, 1.0])), path)
    return ["prepare", str(source), "--output-dir", out(f)]


@case("prepare", "--target-spacing 0.01 (a 33 GB grid)", mentions=("resampling", "limit"))
def _(f):
    return [
        "prepare",
        str(nifti_source(f)),
        "--output-dir",
        out(f),
        "--target-spacing",
        "0.01",
        "0.01",
        "0.01",
    ]


@case("prepare", "--target-spacing 0", mentions=("spacing",))
def _(f):
    return ["prepare", str(nifti_source(f)), "--output-dir", out(f), "--target-spacing", "0", "1", "1"]


@case("prepare", "--target-spacing nan", mentions=("spacing",))
def _(f):
    return ["prepare", str(nifti_source(f)), "--output-dir", out(f), "--target-spacing", "nan", "1", "1"]


@case("prepare", "--split with a negative fraction", mentions=("split",))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--split", "1.2", "-0.1", "-0.1"]


@case("prepare", "--split that does not sum to 1", mentions=("split",))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--split", "0.5", "0.5", "0.5"]


@case("prepare", "--case-id-pattern that is not a regex", mentions=("case_id_pattern", "(patient"))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--case-id-pattern", "(patient"]


@case("prepare", "--case-id-pattern without a group", mentions=("pattern", "group"))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--case-id-pattern", "case"]


@case("prepare", "--channel on 3-D volumes", mentions=("channel",))
def _(f):
    return ["prepare", str(nifti_source(f)), "--output-dir", out(f), "--channel", "5"]


@case("prepare", "--mask-threshold -1", mentions=("mask_threshold",))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--mask-threshold", "-1"]


@case("prepare", "--kind volumes on a folder of PNGs", mentions=("volume",))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--kind", "volumes"]


@case("prepare", "--seed that is not a number", mentions=("seed",))
def _(f):
    return ["prepare", str(png_source(f)), "--output-dir", out(f), "--seed", "abc"]


@case(
    "prepare",
    "a DICOM series with one unreadable slice",
    expect="handled",
    check=_report_names("cannot be read"),
)
def _(f):
    import nibabel as nib

    from msa_hf.testing import write_dicom_series

    source = f / "in" / "series"
    volume = np.random.default_rng(0).integers(-200, 200, (6, 24, 24)).astype(np.int16)
    for case_id in ("case0", "case1"):
        write_dicom_series(source / "imagesTr" / case_id, volume)
        labels = np.zeros((24, 24, 6), np.uint8)
        labels[5:15, 5:15, 2:4] = 1
        (source / "labelsTr").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(labels, np.eye(4)), source / "labelsTr" / f"{case_id}.nii.gz")
    victim = sorted((source / "imagesTr" / "case0").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:200])
    return ["prepare", str(source), "--output-dir", out(f), "--kind", "volumes", "--split", "1", "0", "0"]


def two_label_export(f) -> Path:
    """A DICOM download of two patient folders (a CT and an RT structure set each), the first also holding a
    DICOM-SEG of the same."""
    from msa_hf.data import load_volume, volume_from_axial_slices
    from msa_hf.inference.dicom_seg import write_dicom_seg
    from msa_hf.inference.rtstruct import write_rtstruct
    from msa_hf.testing import write_dicom_series

    source = f / "in" / "export"
    for index, patient in enumerate(("P1", "P2")):
        volume = np.random.default_rng(index).integers(-200, 200, (6, 24, 24)).astype(np.int16)
        write_dicom_series(source / patient / "CT", volume)
        drawn = np.zeros((6, 24, 24), np.uint8)
        drawn[2:4, 5:15, 5:15] = 1
        affine = load_volume(source / patient / "CT").affine
        write_rtstruct(source / patient / "CT", volume_from_axial_slices(drawn), affine,
                       source / patient / "RS" / "rs.dcm", {1: "lesion"})  # fmt: skip
        if index == 0:
            write_dicom_seg(source / patient / "CT", volume_from_axial_slices(drawn), affine,
                            source / patient / "SEG" / "seg.dcm", {1: "lesion"})  # fmt: skip
    return source


@case(
    "prepare",
    "a DICOM export whose patient folder holds both a DICOM-SEG and an RT structure set",
    expect="handled",
    check=_report_names("--dicom-labels"),
)
def _(f):
    source = two_label_export(f)
    return ["prepare", str(source), "--output-dir", out(f), "--kind", "volumes", "--split", "1", "0", "0"]


@case(
    "prepare",
    "RT structure sets whose ROIs are all planning objects (a body outline)",
    mentions=("planning objects", "lesion (EXTERNAL)", "label table"),
)
def _(f):
    import pydicom

    source = two_label_export(f)
    shutil.rmtree(source / "P1" / "SEG")
    for patient in ("P1", "P2"):
        path = source / patient / "RS" / "rs.dcm"
        dataset = pydicom.dcmread(path)
        dataset.RTROIObservationsSequence[0].RTROIInterpretedType = "EXTERNAL"
        dataset.save_as(path)
    return ["prepare", str(source), "--output-dir", out(f), "--kind", "volumes", "--split", "1", "0", "0"]


@case("prepare", "--overlapping for NIfTI label maps", mentions=("--overlapping", "label maps"))
def _(f):
    source = nifti_source(f)
    return ["prepare", str(source), "--output-dir", out(f), "--kind", "volumes", "--overlapping"]


def _seg_source(f) -> Path:
    """Two DICOM series, each with a DICOM-SEG label map drawn on it (`labels/<case>.dcm`)."""
    from msa_hf.data import load_volume, volume_from_axial_slices
    from msa_hf.inference.dicom_seg import write_dicom_seg
    from msa_hf.testing import write_dicom_series

    source = f / "in" / "seg"
    (source / "labels").mkdir(parents=True)
    for index, case_id in enumerate(("case0", "case1")):
        volume = np.random.default_rng(index).integers(-200, 200, (6, 24, 24)).astype(np.int16)
        write_dicom_series(source / "images" / case_id, volume)
        drawn = np.zeros((6, 24, 24), np.uint8)
        drawn[2:4, 5:15, 5:15] = 1
        affine = load_volume(source / "images" / case_id).affine
        write_dicom_seg(source / "images" / case_id, volume_from_axial_slices(drawn), affine,
                        source / "labels" / f"{case_id}.dcm", {1: "lesion"})  # fmt: skip
    return source


@case(
    "prepare",
    "a DICOM-SEG label map of another series",
    expect="handled",
    check=_report_names("case1", "drawn on"),
)
def _(f):
    source = _seg_source(f)
    shutil.copy(
        source / "labels" / "case0.dcm", source / "labels" / "case1.dcm"
    )  # case0's SEG named for case1
    return ["prepare", str(source), "--output-dir", out(f), "--kind", "volumes", "--split", "1", "0", "0"]


@case("prepare", "a DICOM-SEG whose segment the label table lacks", expect="handled",
      check=_report_names("no label value"))  # fmt: skip
def _(f):
    source = _seg_source(f)
    (source / "labels.json").write_text(json.dumps({"0": "background", "1": "lesion"}))
    import pydicom

    seg = pydicom.dcmread(source / "labels" / "case1.dcm")
    segment = seg.SegmentSequence[0]
    segment.SegmentLabel = "tumour"  # a neoplasm, not the table's lesion; coded generically, as viewers do
    segment.SegmentedPropertyTypeCodeSequence[0].CodeValue = "85756007"
    segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning = "Tissue"
    seg.save_as(source / "labels" / "case1.dcm")
    return ["prepare", str(source), "--output-dir", out(f), "--kind", "volumes", "--split", "1", "0", "0"]


def structure_folder_source(folder: Path, count: int = 2) -> Path:
    """A TotalSegmentator-style source: `s<i>/ct.nii.gz` + `s<i>/segmentations/{liver,spleen}.nii.gz`, from
    `nifti_source`'s cases (labels 1 and 2 as the liver and the spleen)."""
    import nibabel as nib

    vols = nifti_source(folder, count=count)
    source = folder / "in" / "totalseg"
    for index in range(count):
        case = source / f"s{index}"
        (case / "segmentations").mkdir(parents=True)
        shutil.copy(vols / "imagesTr" / f"case{index}_0000.nii.gz", case / "ct.nii.gz")
        label = nib.load(vols / "labelsTr" / f"case{index}.nii.gz")
        for name, value in (("liver", 1), ("spleen", 2)):
            mask = (np.asarray(label.dataobj) == value).astype(np.uint8)
            nib.save(nib.Nifti1Image(mask, label.affine), case / "segmentations" / f"{name}.nii.gz")
    return source


@case("prepare", "a case folder of structure files holding two images", expect="handled",
      check=_report_names("s1", "2 volume file(s)"))  # fmt: skip
def _(f):
    source = structure_folder_source(f)
    shutil.copy(source / "s1" / "ct.nii.gz", source / "s1" / "ct_copy.nii.gz")
    return ["prepare", str(source), "--output-dir", out(f), "--split", "1", "0", "0"]


@case("prepare", "structure files that overlap, without --overlapping", expect="handled",
      check=_report_names("s1", "overlap", "--overlapping"))  # fmt: skip
def _(f):
    source = structure_folder_source(f)
    shutil.copy(
        source / "s1" / "segmentations" / "liver.nii.gz", source / "s1" / "segmentations" / "tumour.nii.gz"
    )
    return ["prepare", str(source), "--output-dir", out(f), "--split", "1", "0", "0"]


@case("prepare", "a label table that names none of a case's structure files", expect="handled",
      check=_report_names("s1", "none of its structure files"))  # fmt: skip
def _(f):
    source = structure_folder_source(f)
    for name in ("liver", "spleen"):
        path = source / "s1" / "segmentations" / f"{name}.nii.gz"
        path.rename(path.with_name(f"organ_{name}.nii.gz"))
    (source / "labels.json").write_text(json.dumps({"1": "liver", "2": "spleen"}))
    return ["prepare", str(source), "--output-dir", out(f), "--split", "1", "0", "0"]


@case("prepare", "a structure file on another grid than the others", expect="handled",
      check=_report_names("s1", "another voxel grid"))  # fmt: skip
def _(f):
    import nibabel as nib

    source = structure_folder_source(f)
    spleen = source / "s1" / "segmentations" / "spleen.nii.gz"
    image = nib.load(spleen)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, :, :5], image.affine), spleen)
    return ["prepare", str(source), "--output-dir", out(f), "--split", "1", "0", "0"]


@case(
    "prepare", "a structure file of random bytes", expect="handled", check=_report_names("s1", "liver.nii.gz")
)
def _(f):
    source = structure_folder_source(f)
    (source / "s1" / "segmentations" / "liver.nii.gz").write_bytes(os.urandom(300))
    return ["prepare", str(source), "--output-dir", out(f), "--split", "1", "0", "0"]


@case("prepare", "a MetaImage structure file whose data file is missing", expect="handled",
      check=_report_names("s1", "liver.mhd", "beside it"))  # fmt: skip
def _(f):
    from msa_hf.testing import write_itk_copy

    source = structure_folder_source(f)
    folder = source / "s1" / "segmentations"
    for name in ("liver", "spleen"):  # as MetaImage: a header beside its data
        write_itk_copy(folder / f"{name}.nii.gz", folder / f"{name}.mhd")
        (folder / f"{name}.nii.gz").unlink()
    (folder / "liver.raw").unlink()
    return ["prepare", str(source), "--output-dir", out(f), "--split", "1", "0", "0"]


@case("prepare", "a split file that leaves a case out", mentions=("meta.csv", "s1", "no split"))
def _(f):
    source = structure_folder_source(f)
    (source / "meta.csv").write_text("image_id;split\ns0;train\n")
    return ["prepare", str(source), "--output-dir", out(f), "--split-file", str(source / "meta.csv")]


@case("prepare", "a split file with a split of another name", mentions=("meta.csv", "line 3", "holdout"))
def _(f):
    source = structure_folder_source(f)
    (source / "meta.csv").write_text("image_id;split\ns0;train\ns1;holdout\n")
    return ["prepare", str(source), "--output-dir", out(f), "--split-file", str(source / "meta.csv")]


@case("prepare", "a split file that does not exist", mentions=("nowhere.csv",))
def _(f):
    source = structure_folder_source(f)
    return ["prepare", str(source), "--output-dir", out(f), "--split-file", str(f / "in" / "nowhere.csv")]


@case("prepare", "--structures naming a structure twice", mentions=("--structures", "once"))
def _(f):
    source = structure_folder_source(f)
    return ["prepare", str(source), "--output-dir", out(f), "--structures", "liver", "spleen", "liver"]


@case("prepare", "structure files with a region-based label table", mentions=("region-based",))
def _(f):
    source = structure_folder_source(f)
    (source / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "organs": [1, 2]}}))
    return ["prepare", str(source), "--output-dir", out(f)]


# ------------------------------------------------------------------------------------------------ predict
def _box(*values: float) -> list[str]:
    return ["--box", *(str(v) for v in values)]


@case(
    "predict",
    "--prompts-from-labels on a DICOM export whose patient folder holds a DICOM-SEG and an RT structure set",
    mentions=("P1", "--dicom-labels"),
)
def _(f):
    source = two_label_export(f)
    return ["predict", "tiny", str(source), out(f), "--prompts-from-labels", str(source)]


@case("predict", "--prompts-from-labels on a case folder holding two images beside its structures",
      mentions=("s1", "2 volume file(s)"))  # fmt: skip
def _(f):
    source = structure_folder_source(f)
    shutil.copy(source / "s1" / "ct.nii.gz", source / "s1" / "ct_copy.nii.gz")
    return ["predict", "tiny", str(source), out(f), "--prompts-from-labels", str(source)]


@case("predict", "--device mps where this torch has no such device", mentions=("device mps", "--device cpu"))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20), "--device", "mps"]


def four_d_scan(folder: Path, names: dict[str, str] | None = None) -> Path:
    """A 4-D NIfTI of 3 channels in a Decathlon `imagesTs/`, with a `dataset.json` naming them where `names`."""
    import nibabel as nib

    path = folder / "in" / "msd" / "imagesTs" / "scan.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(100, 10, (24, 20, 4, 3)).astype(np.float32),
                             np.eye(4)), path)  # fmt: skip
    if names is not None:
        (path.parent.parent / "dataset.json").write_text(json.dumps({"modality": names}))
    return path


@case(
    "predict",
    "a 4-D scan to a model trained on one-channel cases",
    mentions=("scan.nii.gz", "3 channels", "--channel"),
)
def _(f):
    return ["predict", "tiny", str(four_d_scan(f)), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 15, 15)]


@case("predict", "--channel naming a sequence the scan does not have",
      mentions=("scan.nii.gz", "'dwi'", "0 = FLAIR, 1 = T1w, 2 = T2w"))  # fmt: skip
def _(f):
    scan = four_d_scan(f, {"0": "FLAIR", "1": "T1w", "2": "T2w"})
    return [
        "predict",
        "tiny",
        str(scan),
        out(f, "m.nii.gz"),
        "--slice",
        "1",
        *_box(2, 2, 15, 15),
        "--channel",
        "dwi",
    ]


@case("predict", "--channel beyond the scan's channels", mentions=("scan.nii.gz", "channel 3", "0 to 2"))
def _(f):
    return ["predict", "tiny", str(four_d_scan(f)), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 15, 15),
            "--channel", "3"]  # fmt: skip


@case("predict", "--channel of a negative number", mentions=("-1", "count from 0"))
def _(f):
    return ["predict", "tiny", str(four_d_scan(f)), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 15, 15),
            "--channel=-1"]  # fmt: skip


def itk_scan(folder: Path, name: str = "scan.nrrd", shape: tuple[int, ...] = (24, 20, 4)) -> Path:
    """A scan written by SimpleITK as `name` (NRRD or MetaImage by its suffix) in `folder/in/`."""
    import SimpleITK as sitk

    path = folder / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(0).normal(100, 10, shape[::-1]).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


@case("predict", "a truncated NRRD scan", mentions=("scan.nrrd", "cannot read the voxel data"))
def _(f):
    scan = itk_scan(f)
    scan.write_bytes(scan.read_bytes()[:-500])
    return ["predict", "tiny", str(scan), out(f, "m.nrrd"), "--slice", "1", *_box(2, 2, 15, 15)]


@case("predict", "a MetaImage header whose data file is missing", mentions=("scan.mhd", "beside it"))
def _(f):
    scan = itk_scan(f, "scan.mhd")
    scan.with_suffix(".raw").unlink()
    return ["predict", "tiny", str(scan), out(f, "m.mha"), "--slice", "1", *_box(2, 2, 15, 15)]


@case("predict", "a 2-D MetaImage given as a volume", mentions=("scan.mha", "2-D", "PNG"))
def _(f):
    return ["predict", "tiny", str(itk_scan(f, "scan.mha", (24, 20))), out(f, "m.mha"), *_box(2, 2, 15, 15)]


@case(
    "predict",
    "a volume's mask asked as .nhdr (a header beside its data)",
    mentions=("m.nhdr", ".nrrd", ".mha"),
)
def _(f):
    return ["predict", "tiny", str(itk_scan(f)), out(f, "m.nhdr"), "--slice", "1", *_box(2, 2, 15, 15)]


@case("prepare", "a 3D Slicer segmentation whose segments overlap (layers), without --overlapping",
      mentions=("case.seg.nrrd", "['organ', 'tumour'] overlap", "--overlapping"))  # fmt: skip
def _(f):
    import SimpleITK as sitk

    scan = itk_scan(f, "case.nrrd")
    organ, tumour = np.zeros((4, 20, 24), np.uint8), np.zeros((4, 20, 24), np.uint8)
    organ[1:3, 4:16, 4:20] = 1
    tumour[1:3, 8:12, 8:12] = 1  # inside the organ, so in a layer of its own
    layered = sitk.Compose([sitk.GetImageFromArray(organ), sitk.GetImageFromArray(tumour)])
    for index, name in enumerate(("organ", "tumour")):
        layered.SetMetaData(f"Segment{index}_Name", name)
        layered.SetMetaData(f"Segment{index}_Layer", str(index))
        layered.SetMetaData(f"Segment{index}_LabelValue", "1")
    sitk.WriteImage(layered, str(scan.parent / "case.seg.nrrd"))
    return ["prepare", str(scan.parent), "--output-dir", out(f)]


@case("predict", "--dicom-labels for a folder of NIfTI files", mentions=("--dicom-labels",))
def _(f):
    source = nifti_source(f)
    return ["predict", "tiny", str(source / "imagesTr"), out(f), "--prompts-from-labels", str(source / "labelsTr"),
            "--dicom-labels", "seg"]  # fmt: skip


@case("predict", "--structure-files with a file name as the output", mentions=("m.nii.gz", "folder"))
def _(f):
    source = nifti_source(f, count=1)
    return ["predict", "tiny", str(source / "imagesTr" / "case0_0000.nii.gz"), out(f, "m.nii.gz"), "--slice", "1",
            *_box(2, 2, 20, 20), "--structure-files"]  # fmt: skip


@case("predict", "--structure-files with a .dcm output", mentions=("--structure-files",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.dcm"), *_box(2, 2, 20, 20), "--structure-files"]


@case(
    "predict",
    "--structure-files into a folder of the user's files",
    mentions=("out", "other than structure masks"),
    protect_out=True,
)
def _(f):
    (f / "out").mkdir(parents=True)
    (f / "out" / "notes.txt").write_text("mine")
    return ["predict", "tiny", str(picture(f)), out(f), *_box(2, 2, 20, 20), "--structure-files"]


@case(
    "predict",
    "--structure-files and --dicom-output for many inputs",
    mentions=("--structure-files", "--dicom-output"),
)
def _(f):
    source = nifti_source(f)
    return ["predict", "tiny", str(source / "imagesTr"), out(f), "--prompts-from-labels", str(source / "labelsTr"),
            "--structure-files", "--dicom-output", "seg"]  # fmt: skip


@case("predict", "a zip that is random bytes", mentions=("export.zip", "not a readable zip"))
def _(f):
    path = f / "in" / "export.zip"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(600))
    return ["predict", "tiny", str(path), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 20, 20)]


@case("predict", "a zip without a DICOM file", mentions=("export.zip", "no DICOM file"))
def _(f):
    import zipfile

    path = f / "in" / "export.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scan.nii.gz", b"not DICOM")
    return ["predict", "tiny", str(path), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 20, 20)]


@case("predict", "model folder does not exist", mentions=("nowhere",))
def _(f):
    return ["predict", str(f / "in" / "nowhere"), str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "model weights truncated", mentions=("model.safetensors",))
def _(f):
    model = model_folder(f)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return ["predict", str(model), str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "model config that is not JSON", mentions=("config.json",))
def _(f):
    model = model_folder(f)
    (model / "config.json").write_text("{not json")
    return ["predict", str(model), str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "model folder without weights", mentions=("model",))
def _(f):
    model = model_folder(f)
    (model / "model.safetensors").unlink()
    return ["predict", str(model), str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "input file does not exist", mentions=("nothing.png",))
def _(f):
    return ["predict", "tiny", str(f / "in" / "nothing.png"), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "input is random bytes named .png", mentions=("x.png",))
def _(f):
    path = f / "in" / "x.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(500))
    return ["predict", "tiny", str(path), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "input is a folder of unrelated files", mentions=("notes",))
def _(f):
    folder = f / "in" / "notes"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    return ["predict", "tiny", str(folder), out(f, "m.nii.gz"), *_box(2, 2, 20, 20)]


@case(
    "predict", "a 3 mm volume for a model of 1e-5 mm slices (a 1.3-billion-voxel grid)",
    mentions=("resampled", "--no-resample-slices", "limit"),
)  # fmt: skip
def _(f):
    import json

    model = model_folder(f)
    config = model / "processor_config.json"
    content = json.loads(config.read_text())
    content["msa_processing"]["slice_spacing"] = 1e-5  # a hand-edited or mistaken record
    config.write_text(json.dumps(content))
    volume = nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz"
    return ["predict", str(model), str(volume), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 20, 20)]


def _study(f) -> Path:
    """Two series of one study side by side, as a PACS exports them."""
    from msa_hf.testing import write_dicom_series

    study = f / "in" / "study"
    volume = np.random.default_rng(0).integers(-200, 200, (4, 24, 24)).astype(np.int16)
    write_dicom_series(study / "SER2", volume, series_number=2, description="axial")
    write_dicom_series(study / "SER4", volume, series_number=4, description="delayed")
    return study


@case(
    "predict", "a DICOM study of several series, no --series", mentions=("--series", "2: 4 axial CT slices")
)
def _(f):
    return ["predict", "tiny", str(_study(f)), out(f, "m.nii.gz"), "--slice", "1", *_box(2, 2, 20, 20)]


@case("predict", "--series names no series of the folder", mentions=("names none", "4: 4 axial CT slices"))
def _(f):
    return [
        "predict",
        "tiny",
        str(_study(f)),
        out(f, "m.nii.gz"),
        "--series",
        "7",
        "--slice",
        "1",
        *_box(2, 2, 20, 20),
    ]


@case("predict", "output path is the input", mentions=("is the input",))
def _(f):
    path = picture(f)
    return ["predict", "tiny", str(path), str(path), *_box(2, 2, 20, 20)]


@case("predict", "output with an unsupported extension", mentions=(".txt",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.txt"), *_box(2, 2, 20, 20)]


@case("predict", "output file exists, no --overwrite", mentions=("m.png", "--overwrite"))
def _(f):
    (f / "out").mkdir(parents=True)
    (f / "out" / "m.png").write_bytes(b"the user's own mask")
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "batch into a folder holding a mask, no --overwrite", mentions=("x.png", "--overwrite"))
def _(f):
    picture(f)
    (f / "out" / "masks").mkdir(parents=True)
    (f / "out" / "masks" / "x.png").write_bytes(b"an earlier mask")
    return ["predict", "tiny", str(f / "in"), out(f, "masks"), *_box(2, 2, 20, 20)]


@case("predict", "output is an existing folder", mentions=("folder",))
def _(f):
    (f / "out" / "m.png").mkdir(parents=True)
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20)]


@case("predict", "probabilities written over the input", mentions=("is the input",))
def _(f):
    path = picture(f)
    return [
        "predict",
        "tiny",
        str(path),
        out(f, "m.png"),
        *_box(2, 2, 20, 20),
        "--save-probabilities",
        str(path),
    ]


@case("predict", "probabilities and mask the same file", mentions=("same file as the mask",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20),
            "--save-probabilities", out(f, "m.png")]  # fmt: skip


@case("predict", "probabilities of an image as PNG", mentions=(".tif",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20),
            "--save-probabilities", out(f, "p.png")]  # fmt: skip


@case("predict", "probabilities of a volume named as a Slicer segmentation", mentions=("p.seg.nrrd", ".nrrd"))
def _(f):
    return ["predict", "tiny", str(itk_scan(f)), out(f, "m.seg.nrrd"), "--slice", "1", *_box(2, 2, 15, 15),
            "--save-probabilities", out(f, "p.seg.nrrd")]  # fmt: skip


@case("predict", "batch manifest with an unknown column", mentions=("manifest", "box"))
def _(f):
    picture(f)
    (f / "in" / "m.json").write_text('[{"input": "x.png", "box": [1, 2, 3, 4]}]')
    return ["predict", "tiny", str(f / "in" / "m.json"), out(f, "masks")]


@case("predict", "batch manifest with malformed inline prompts", mentions=("prompts are not JSON",))
def _(f):
    picture(f)
    (f / "in" / "m.csv").write_text('input,prompts\nx.png,"[{box: 1}]"\n')
    return ["predict", "tiny", str(f / "in" / "m.csv"), out(f, "masks")]


@case("predict", "batch manifest with two inputs written to one output", mentions=("would both be written",))
def _(f):
    picture(f)
    picture(f, name="y.png")
    (f / "in" / "m.json").write_text(
        '[{"input": "x.png", "output": "a.png"}, {"input": "y.png", "output": "a.png"}]'
    )
    return ["predict", "tiny", str(f / "in" / "m.json"), out(f, "masks"), *_box(2, 2, 20, 20)]


@case(
    "predict",
    "--prompts-from-labels where an input has no label map",
    mentions=("case2_0000.nii.gz", "manifest"),
)
def _(f):
    source = nifti_source(f, count=3)
    (source / "labelsTr" / "case2.nii.gz").unlink()
    return ["predict", "tiny", str(source / "imagesTr"), out(f, "masks"),
            "--prompts-from-labels", str(source / "labelsTr")]  # fmt: skip


@case("predict", "--prompts-from-labels naming the inputs' own folder", mentions=("folder of their own",))
def _(f):
    source = png_source(f, count=2)
    return ["predict", "tiny", str(source), out(f, "masks"), "--prompts-from-labels", str(source)]


@case("predict", "DICOM-SEG output for a NIfTI input", mentions=("DICOM series", ".nii.gz"))
def _(f):
    source = nifti_source(f, count=1)
    return ["predict", "tiny", str(source / "imagesTr" / "case0.nii.gz"), out(f, "seg.dcm"), *_box(2, 2, 10, 10),
            "--slice", "1"]  # fmt: skip


@case("predict", "RT structure set asked for with a NIfTI output", mentions=("RT structure set", ".dcm"))
def _(f):
    source = nifti_source(f, count=1)
    return ["predict", "tiny", str(source / "imagesTr" / "case0.nii.gz"), out(f, "mask.nii.gz"), *_box(2, 2, 10, 10),
            "--slice", "1", "--dicom-output", "rtstruct"]  # fmt: skip


@case(
    "predict",
    "RT structure set asked for many inputs none of them DICOM",
    mentions=("--dicom-output", "DICOM series"),
)
def _(f):
    source = nifti_source(f)
    return ["predict", "tiny", str(source / "imagesTr"), out(f, "masks"), *_box(2, 2, 10, 10), "--slice", "1",
            "--dicom-output", "rtstruct"]  # fmt: skip


def _names_apart(folder: Path, output: str) -> bool:
    """A DICOM output's segments or ROIs: named apart, each within the 64 bytes of a DICOM LO value."""
    import pydicom

    written = pydicom.dcmread(folder / "out" / "named.dcm")
    items = written.get("SegmentSequence") or written.StructureSetROISequence
    names = [str(item.get("SegmentLabel") or item.get("ROIName")) for item in items]
    return (
        len(names) == 3
        and len({n.casefold() for n in names}) == 3
        and max(len(n.encode()) for n in names) <= 64
    )


for _kind in ("seg", "rtstruct"):

    @case(
        "predict",
        f"--dicom-output {_kind} of prompts whose names are shared by other values or too long for DICOM",
        expect="handled",
        check=_names_apart,
    )
    def _(f, kind=_kind):
        from msa_hf.testing import write_dicom_series

        volume = np.full((6, 24, 24), -1000, np.int16)
        volume[1:5, 4:20, 4:20] = 60
        write_dicom_series(f / "in" / "series", volume)
        prompts = [
            {"box": [4, 4, 20, 20], "slice": 2, "name": "Liver", "value": 1},
            {"box": [6, 6, 12, 12], "slice": 3, "name": "liver", "value": 2},
            {"box": [10, 10, 18, 18], "slice": 3, "name": "Läsion 肝 " * 12, "value": 3},
        ]
        (f / "in" / "prompts.json").write_text(json.dumps(prompts))
        return ["predict", "tiny", str(f / "in" / "series"), out(f, "named.dcm"), "--prompts",
                str(f / "in" / "prompts.json"), "--dicom-output", kind]  # fmt: skip


def small_series(folder: Path) -> Path:
    """A CT series of six slices of 24 x 24 pixels with a block of soft tissue, in `folder/in/series`."""
    from msa_hf.testing import write_dicom_series

    volume = np.full((6, 24, 24), -1000, np.int16)
    volume[1:5, 4:20, 4:20] = 60
    write_dicom_series(folder / "in" / "series", volume)
    return folder / "in" / "series"


@case("predict", "--volume-report beside a NIfTI mask", mentions=("--volume-report", "DICOM-SEG"))
def _(f):
    return ["predict", "tiny", str(small_series(f)), out(f, "m.nii.gz"), *_box(4, 4, 20, 20), "--slice", "2",
            "--volume-report", out(f, "volumes.dcm")]  # fmt: skip


@case(
    "predict", "--volume-report for many inputs none of them DICOM", mentions=("--volume-report", "DICOM-SEG")
)
def _(f):
    source = nifti_source(f)
    return ["predict", "tiny", str(source / "imagesTr"), out(f, "masks"), *_box(2, 2, 10, 10), "--slice", "1",
            "--volume-report", out(f, "reports")]  # fmt: skip


@case("predict", "no prompt at all", mentions=("--point", "--box"))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png")]


@case("predict", "a click outside the image", mentions=("500",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), "--point", "500", "10"]


@case("predict", "a NaN click", mentions=("nan",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), "--point", "nan", "10"]


@case("predict", "an infinite box corner", mentions=("inf",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(0, 0, "inf", 10)]


@case("predict", "a box with negative corners", mentions=("box",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(-20, -20, -5, -5)]


@case("predict", "a box whose corners are swapped", mentions=("box", "x0 <= x1"))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(30, 30, 5, 5)]


@case("predict", "a click that is not a number", mentions=("--point",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), "--point", "ten", "10"]


@case("predict", "--prompts file does not exist", mentions=("prompts.json",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), "--prompts", str(f / "in" / "prompts.json")]


def _prompts(f: Path, content: str) -> list[str]:
    path = f / "in" / "prompts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), "--prompts", str(path)]


@case("predict", "--prompts file that is not JSON", mentions=("prompts.json",))
def _(f):
    return _prompts(f, "[{points: 1}")


@case("predict", "--prompts that is an object, not a list", mentions=("prompts.json",))
def _(f):
    return _prompts(f, json.dumps({"points": [[1, 2]]}))


@case("predict", "--prompts with an empty list", mentions=("prompts.json",))
def _(f):
    return _prompts(f, "[]")


@case("predict", "--prompts with points as a string", mentions=("points",))
def _(f):
    return _prompts(f, json.dumps([{"points": "10,10"}]))


@case("predict", "--prompts with a point of one coordinate", mentions=("points",))
def _(f):
    return _prompts(f, json.dumps([{"points": [[10]]}]))


@case("predict", "--prompts with more labels than points", mentions=("labels",))
def _(f):
    return _prompts(f, json.dumps([{"points": [[10, 10]], "labels": [1, 0]}]))


@case("predict", "--prompts with a label of 2", mentions=("labels",))
def _(f):
    return _prompts(f, json.dumps([{"points": [[10, 10]], "labels": [2]}]))


@case("predict", "--prompts with a box of three numbers", mentions=("box",))
def _(f):
    return _prompts(f, json.dumps([{"box": [1, 2, 3]}]))


@case("predict", "--prompts with an unknown key", mentions=("colour",))
def _(f):
    return _prompts(f, json.dumps([{"box": [1, 2, 20, 20], "colour": "red"}]))


@case("predict", "--prompts entry that is a number", mentions=("prompts.json",))
def _(f):
    return _prompts(f, "[3]")


@case("predict", "--prompts with a label value of 70000", mentions=("label",))
def _(f):
    return _prompts(f, json.dumps([{"box": [1, 2, 20, 20], "label": 70000}]))


@case("predict", "--prompts with an output value of 70000", mentions=("value", "65535"))
def _(f):
    return _prompts(f, json.dumps([{"box": [1, 2, 20, 20], "value": 70000}]))


@case("predict", "--slice on a 2-D image", mentions=("slice",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20), "--slice", "3"]


@case("predict", "--slice beyond a volume's slices", mentions=("slice", "99"))
def _(f):
    source = nifti_source(f, count=1)
    return ["predict", "tiny", str(source / "imagesTr" / "case0_0000.nii.gz"), out(f, "m.nii.gz"),
            *_box(2, 2, 10, 10), "--slice", "99"]  # fmt: skip


@case(
    "predict", "--prompt-frame voxel on a sagittal NIfTI, --plane axial",
    mentions=("sagittal, not axial", "--plane sagittal", "display"),
)  # fmt: skip
def _(f):
    import nibabel as nib

    sagittal = np.array(
        [[0.0, 0.0, 2.5, 0.0], [0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    (f / "in").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 6), np.float32), sagittal), f / "in" / "sag.nii.gz")
    return ["predict", "tiny", str(f / "in" / "sag.nii.gz"), out(f, "m.nii.gz"), *_box(2, 2, 8, 8),
            "--slice", "1", "--prompt-frame", "voxel", "--plane", "axial"]  # fmt: skip


@case(
    "predict",
    "--prompt-frame voxel on a DICOM image number the series lacks",
    mentions=("InstanceNumber", "1 to 6"),
)
def _(f):
    from msa_hf.testing import write_dicom_series

    write_dicom_series(f / "in" / "series", np.zeros((6, 24, 24), np.int16))
    return ["predict", "tiny", str(f / "in" / "series"), out(f, "m.nii.gz"), *_box(2, 2, 20, 20),
            "--slice", "9", "--prompt-frame", "voxel"]  # fmt: skip


@case("predict", "--series for a NIfTI input", mentions=("a series is chosen in a DICOM folder",))
def _(f):
    source = nifti_source(f, count=1)
    return ["predict", "tiny", str(source / "imagesTr" / "case0_0000.nii.gz"), out(f, "m.nii.gz"),
            *_box(2, 2, 10, 10), "--slice", "1", "--series", "2"]  # fmt: skip


@case("predict", "--prompt-frame voxel for many inputs", mentions=("one volume at a time",))
def _(f):
    source = nifti_source(f, count=2)
    return ["predict", "tiny", str(source / "imagesTr"), out(f, "masks"), *_box(2, 2, 10, 10), "--slice", "1",
            "--prompt-frame", "voxel"]  # fmt: skip


@case("predict", "--propagate on a 2-D image", mentions=("propagate",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20), "--propagate"]


@case("predict", "--text on a model trained without text", mentions=("text",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), "--text", "liver"]


@case("predict", "a volume header claiming 1200^3 voxels", mentions=("bomb.nii.gz",))
def _(f):
    path = nifti_bomb(f / "in" / "bomb.nii.gz")
    return ["predict", "tiny", str(path), out(f, "m.nii.gz"), *_box(2, 2, 10, 10), "--slice", "1"]


@case("predict", "a PNG header claiming 100000 x 100000 pixels", mentions=("huge.png",))
def _(f):
    path = png_claiming(f / "in" / "huge.png", 100_000, 100_000)
    return ["predict", "tiny", str(path), out(f, "m.png"), *_box(2, 2, 10, 10)]


@case("predict", "--device that does not exist", mentions=("device",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20), "--device", "tpu"]


@case("predict", "--device cuda on a machine without a GPU", mentions=("cuda",))
def _(f):
    return ["predict", "tiny", str(picture(f)), out(f, "m.png"), *_box(2, 2, 20, 20), "--device", "cuda"]


@case("predict", "a volume mask written to .png", mentions=(".png",))
def _(f):
    source = nifti_source(f, count=1)
    return ["predict", "tiny", str(source / "imagesTr" / "case0_0000.nii.gz"), out(f, "m.png"),
            *_box(2, 2, 10, 10), "--slice", "3"]  # fmt: skip


@case("predict", "a 16-bit image", expect="handled", check=lambda f, o: (f / "out" / "m.png").is_file())
def _(f):
    return ["predict", "tiny", str(picture(f, dtype=np.uint16)), out(f, "m.png"), *_box(10, 8, 36, 32)]


@case("predict", "a one-pixel image", expect="handled", check=lambda f, o: (f / "out" / "m.png").is_file())
def _(f):
    return ["predict", "tiny", str(picture(f, shape=(1, 1))), out(f, "m.png"), "--point", "0", "0"]


# ------------------------------------------------------------------------------------------------ evaluate
@case("evaluate", "dataset folder does not exist", mentions=("nowhere",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(f / "in" / "nowhere")]


@case("evaluate", "dataset folder with no data", mentions=("empty",))
def _(f):
    (f / "in" / "empty").mkdir(parents=True)
    return ["evaluate", "tiny", "--dataset", str(f / "in" / "empty")]


@case(
    "evaluate",
    "--output-dir with an earlier evaluation, no --overwrite",
    mentions=("results.json", "--overwrite"),
)
def _(f):
    (f / "out").mkdir(parents=True)
    (f / "out" / "results.json").write_text("{}")
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--output-dir", out(f)]


@case("evaluate", "a split the dataset does not have", mentions=("holdout",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--split", "holdout"]


@case("evaluate", "--clicks 0", mentions=("clicks",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--clicks", "0"]


@case("evaluate", "--clicks -3", mentions=("clicks",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--clicks", "-3"]


@case("evaluate", "--classes naming no structure of the dataset", mentions=("liver",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--classes", "liver"]


@case("evaluate", "--batch-size 0", mentions=("batch",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--batch-size", "0"]


@case("evaluate", "--output-dir inside the dataset", mentions=("lies inside the input",))
def _(f):
    dataset = prepared(f)
    return ["evaluate", "tiny", "--dataset", str(dataset), "--output-dir", str(dataset / "scores")]


@case("evaluate", "an unknown protocol", mentions=("protocols",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--protocols", "lasso"]


@case(
    "evaluate", "a whole-volume protocol on a dataset of pictures", mentions=("2-D pictures", "--protocols")
)
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--protocols", "volume_propagation"]


@case("evaluate", "per-slice and whole-volume protocols on a dataset of pictures", mentions=("2-D pictures",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--protocols", "box", "volume_propagation",
            "--output-dir", out(f)]  # fmt: skip


@case(
    "evaluate",
    "--clicks for a whole-volume protocol without rounds",
    mentions=("--clicks", "volume_propagation"),
)
def _(f):
    return [
        "evaluate",
        "tiny",
        "--dataset",
        str(prepared(f)),
        "--protocols",
        "volume_points1",
        "--clicks",
        "2",
    ]


# ------------------------------------------------------------------------------------------------ score
def scored_pair(folder: Path, prediction: Any = None, affine: Any = None) -> tuple[str, str]:
    """A NIfTI source's label maps and predictions named as predict names them (`case<i>_0000.nii.gz`, the
    labels themselves unless `prediction` replaces case 0's): the argv's predictions and labels folders."""
    import nibabel as nib

    source = nifti_source(folder)
    predictions = folder / "in" / "pred"
    predictions.mkdir()
    for label in sorted((source / "labelsTr").glob("*.nii.gz")):
        image = nib.load(label)
        array = np.asarray(image.dataobj) if prediction is None or "case0" not in label.name else prediction
        nib.save(
            nib.Nifti1Image(array, image.affine if affine is None else affine),
            predictions / label.name.replace(".nii.gz", "_0000.nii.gz"),
        )
    return str(predictions), str(source / "labelsTr")


@case(
    "score", "RT structure sets of overlapping structures valued beyond 16", mentions=("case.dcm", "1 to 16")
)
def _(f):
    from msa_hf.inference.predictor import Prompt, predict_file
    from msa_hf.testing import BoxFillSam, write_dicom_series

    volume = np.full((6, 20, 24), -1000.0, np.float32)
    volume[1:5, 3:16, 2:20] = 60.0
    write_dicom_series(f / "in" / "series", volume)
    prompts = [Prompt(box=[2, 2, 19, 15], slice=2, value=20, name="liver"),
               Prompt(box=[6, 5, 21, 9], slice=2, value=21, name="tumour")]  # fmt: skip
    for folder in ("pred", "ref"):
        predict_file(BoxFillSam(32), f / "in" / "series", f / "in" / folder / "case.dcm", prompts,
                     dicom_output="rtstruct")  # fmt: skip
    (f / "in" / "ref" / "labels.json").write_text(json.dumps({"20": "liver", "21": "tumour"}))
    return ["score", str(f / "in" / "pred"), str(f / "in" / "ref"), "--images", str(f / "in" / "series")]


@case("score", "a structure file that no label table names", mentions=("spleen.nii.gz", "label table"))
def _(f):
    import nibabel as nib

    source = nifti_source(f, count=1)
    case = f / "in" / "pred" / "case0"
    case.mkdir(parents=True)
    label = nib.load(source / "labelsTr" / "case0.nii.gz")
    for name, value in (("label_1", 1), ("spleen", 2)):
        mask = (np.asarray(label.dataobj) == value).astype(np.uint8)
        nib.save(nib.Nifti1Image(mask, label.affine), case / f"{name}.nii.gz")
    return ["score", str(f / "in" / "pred"), str(source / "labelsTr")]


@case("score", "predictions folder does not exist", mentions=("nowhere",))
def _(f):
    return ["score", str(f / "in" / "nowhere"), str(nifti_source(f) / "labelsTr")]


@case("score", "a prediction with no label map", mentions=("stray_0000.nii.gz", "no label map"))
def _(f):
    predictions, labels = scored_pair(f)
    shutil.copy(Path(predictions) / "case0_0000.nii.gz", Path(predictions) / "stray_0000.nii.gz")
    return ["score", predictions, labels]


@case("score", "a prediction on another voxel grid", mentions=("case0_0000.nii.gz", "another voxel grid"))
def _(f):
    moved = np.diag([0.7, 0.7, 3.0, 1.0])  # nifti_source's grid, 5 mm to the side
    moved[0, 3] = 5.0
    return ["score", *scored_pair(f, affine=moved)]


@case("score", "a probability map given as the prediction", mentions=("case0_0000.nii.gz", "non-integer"))
def _(f):
    return ["score", *scored_pair(f, prediction=np.full((24, 20, 10), 0.7, np.float32))]


@case("score", "a volume against a 2-D mask", mentions=("one is a volume",))
def _(f):
    predictions, _ = scored_pair(f)
    return ["score", str(Path(predictions) / "case0_0000.nii.gz"), str(png_source(f) / "case0_mask.png")]


@case("score", "--tolerance 0", mentions=("--tolerance",))
def _(f):
    return ["score", *scored_pair(f), "--tolerance", "0"]


@case("score", "--classes naming no structure", mentions=("pancreas",))
def _(f):
    return ["score", *scored_pair(f), "--classes", "pancreas"]


@case(
    "score",
    "--output-dir with earlier scores, no --overwrite",
    mentions=("scores.csv", "--overwrite"),
    protect_out=True,
)
def _(f):
    (f / "out").mkdir(parents=True)
    (f / "out" / "scores.csv").write_text("mine")
    return ["score", *scored_pair(f), "--output-dir", out(f)]


@case("score", "a manifest of pairs with a row that names no label", mentions=("pairs.csv", "row 2", "label"))
def _(f):
    predictions, labels = scored_pair(f)
    manifest = f / "in" / "pairs.csv"
    manifest.write_text(
        f"prediction,label\n{predictions}/case0_0000.nii.gz,{labels}/case0.nii.gz\n{predictions}/case1_0000.nii.gz,\n"
    )
    return ["score", str(manifest)]


@case("score", "a manifest of pairs and a labels folder too", mentions=("pairs.csv", "leave the labels"))
def _(f):
    predictions, labels = scored_pair(f)
    manifest = f / "in" / "pairs.csv"
    manifest.write_text(f"prediction,label\n{predictions}/case0_0000.nii.gz,{labels}/case0.nii.gz\n")
    return ["score", str(manifest), labels]


@case("score", "predictions without labels or a manifest", mentions=("pred", "manifest"))
def _(f):
    predictions, _ = scored_pair(f)
    return ["score", predictions]


@case(
    "score",
    "predictions written in another axis order than the labels",
    expect="handled",
    check=lambda f, o: "| class_1 | 3 | 1.000" in o,
)
def _(f):
    # x flipped in the file, the same voxels in the world: read in RAS+ order they line up
    import nibabel as nib

    predictions, labels = scored_pair(f)
    for path in Path(predictions).glob("*.nii.gz"):
        image = nib.load(path)
        flip = np.diag([-1.0, 1, 1, 1])
        flip[0, 3] = image.shape[0] - 1
        nib.save(
            nib.Nifti1Image(np.ascontiguousarray(np.asarray(image.dataobj)[::-1]), image.affine @ flip), path
        )
    return ["score", predictions, labels]


@case("evaluate", "a corrupt Parquet file in the dataset", mentions=("dataset",))
def _(f):
    dataset = prepared(f)
    for parquet in (dataset / "data").glob("test-*.parquet"):
        parquet.write_bytes(b"PAR1 broken")
    return ["evaluate", "tiny", "--dataset", str(dataset)]


@case("evaluate", "model that does not exist", mentions=("nowhere",))
def _(f):
    return ["evaluate", str(f / "in" / "nowhere"), "--dataset", str(prepared(f))]


@case("evaluate", "--stride 0", mentions=("stride",))
def _(f):
    return ["evaluate", "tiny", "--dataset", str(prepared(f)), "--stride", "0"]


# ------------------------------------------------------------------------------------------------ send
@case("send", "a PNG given as a DICOM file", mentions=("x.png", "not a DICOM file"))
def _(f):
    return ["send", str(picture(f)), "--to", "PACS@127.0.0.1:104"]


@case("send", "a file that does not exist", mentions=("nowhere.dcm", "no such file"))
def _(f):
    return ["send", str(f / "in" / "nowhere.dcm"), "--to", "PACS@127.0.0.1:104"]


@case("send", "a node given without its port", mentions=("AE_TITLE@HOST:PORT",))
def _(f):
    return ["send", str(picture(f)), "--to", "PACS@localhost"]


@case("send", "a DICOMweb URL without a host", mentions=("https:///dicom-web", "host"))
def _(f):
    return ["send", str(picture(f)), "--to", "https:///dicom-web"]


@case("send", "a node where nothing listens", mentions=("PACS@127.0.0.1", "nothing answers there", "kept"))
def _(f):
    from msa_hf.testing import write_dicom_series

    write_dicom_series(f / "in" / "series", np.zeros((2, 8, 8), np.int16))
    return ["send", str(f / "in" / "series"), "--to", "PACS@127.0.0.1:1"]  # port 1: tcpmux, never served


# ------------------------------------------------------------------------------------------------ convert
def _checkpoint(f: Path, data: bytes) -> str:
    path = f / "in" / "sam.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@case("convert", "checkpoint does not exist", mentions=("sam.pth",))
def _(f):
    return ["convert", str(f / "in" / "sam.pth"), "--output-dir", out(f)]


@case("convert", "a pickle that runs code when loaded", mentions=("sam.pth",))
def _(f):
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(f / "pwned"),))

    path = _checkpoint(f, pickle.dumps(Payload()))
    return ["convert", path, "--output-dir", out(f)]


@case("convert", "random bytes named .pth", mentions=("sam.pth",))
def _(f):
    # seeded: the loader's message depends on the bytes, and the docs table should not change between runs
    return ["convert", _checkpoint(f, np.random.default_rng(0).bytes(2000)), "--output-dir", out(f)]


@case("convert", "an empty file", mentions=("sam.pth",))
def _(f):
    return ["convert", _checkpoint(f, b""), "--output-dir", out(f)]


@case("convert", "a state dict of another network", mentions=("sam.pth",))
def _(f):
    import torch

    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(3, 3)}, buffer)
    return ["convert", _checkpoint(f, buffer.getvalue()), "--output-dir", out(f)]


@case("convert", "existing non-empty output without --overwrite", mentions=("--overwrite",), protect_out=True)
def _(f):
    (f / "out").mkdir()
    (f / "out" / "keep.txt").write_text("mine")
    return ["convert", _checkpoint(f, os.urandom(100)), "--output-dir", out(f)]


@case("convert", "--num-slices 0", mentions=("num", "slices"))
def _(f):
    return ["convert", _checkpoint(f, os.urandom(100)), "--output-dir", out(f), "--num-slices", "0"]


@case("convert", "output is the checkpoint itself", mentions=("sam.pth",))
def _(f):
    path = _checkpoint(f, os.urandom(100))
    return ["convert", path, "--output-dir", path, "--overwrite"]


# ------------------------------------------------------------------------------------------------ export-onnx
@case("export-onnx", "a model whose config does not match its weights", mentions=("config.json", "weights"))
def _(f):
    model = model_folder(f)
    config = json.loads((model / "config.json").read_text())
    config["vision_config"]["hidden_size"] *= 2  # the weights are of the smaller encoder
    (model / "config.json").write_text(json.dumps(config))
    return ["export-onnx", str(model), "--output-dir", out(f)]


@case("export-onnx", "model folder does not exist", mentions=("nowhere",))
def _(f):
    return ["export-onnx", str(f / "in" / "nowhere"), "--output-dir", out(f)]


@case(
    "export-onnx",
    "existing non-empty output without --overwrite",
    mentions=("--overwrite",),
    protect_out=True,
)
def _(f):
    (f / "out").mkdir()
    (f / "out" / "keep.txt").write_text("mine")
    return ["export-onnx", "tiny", "--output-dir", out(f)]


@case("export-onnx", "output is the model folder itself, with --overwrite", mentions=("is the input",))
def _(f):
    model = model_folder(f)
    return ["export-onnx", str(model), "--output-dir", str(model), "--overwrite"]


# ------------------------------------------------------------------------------------------------ train
def _train(f: Path, *flags: str) -> list[str]:
    return ["train", "--dataset", str(prepared(f)), "--output-dir", out(f), "--steps", "2", "--batch-size", "2",
            "--log-with", "none", "--no-evaluate-test", *flags]  # fmt: skip


for flag, value, words in (
    ("--learning-rate", "inf", ("learning_rate",)),
    ("--learning-rate", "nan", ("learning_rate",)),
    ("--learning-rate", "-1", ("learning_rate",)),
    ("--dice-weight", "-1", ("dice_weight",)),
    ("--iou-weight", "inf", ("iou_weight",)),
    ("--eval-every", "0", ("eval_every",)),
    ("--checkpoint-every", "0", ("checkpoint_every",)),
    ("--steps", "0", ("steps",)),
    ("--batch-size", "0", ("batch_size",)),
    ("--box-probability", "1.5", ("box_probability",)),
    ("--num-clicks", "0", ("num_clicks",)),
    ("--weight-decay", "-0.1", ("weight_decay",)),
    ("--window", "spleen", ("window",)),
    ("--num-slices", "0", ("num_slices",)),
    ("--adapter-bottleneck-ratio", "0", ("adapter_bottleneck_ratio",)),
):
    case("train", f"{flag} {value}", mentions=words)(lambda f, flag=flag, value=value: _train(f, flag, value))


@case("train", "an unknown --method", mentions=("method",))
def _(f):
    return _train(f, "--method", "magic")


@case("train", "--dataset that does not exist", mentions=("nowhere",))
def _(f):
    return ["train", "--dataset", str(f / "in" / "nowhere"), "--output-dir", out(f), "--steps", "2"]


@case("train", "--base that does not exist", mentions=("nowhere",))
def _(f):
    return _train(f, "--base", str(f / "in" / "nowhere"))


@case("train", "--config file does not exist", mentions=("run.yaml",))
def _(f):
    return _train(f, "--config", str(f / "in" / "run.yaml"))


def _config(f: Path, text: str) -> list[str]:
    path = f / "in" / "run.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return _train(f, "--config", str(path))


@case("train", "--config with an unknown key", mentions=("run.yaml", "learning_rat"))
def _(f):
    return _config(f, "learning_rat: 0.001\n")


@case("train", "--config that is a list", mentions=("run.yaml",))
def _(f):
    return _config(f, "- steps: 3\n")


@case("train", "--config with a string for a number", mentions=("run.yaml", "steps"))
def _(f):
    return _config(f, "steps: many\n")


@case("train", "--config that is not YAML", mentions=("run.yaml",))
def _(f):
    return _config(f, "steps: [3\n")


@case("train", "--classes naming no structure", mentions=("liver",))
def _(f):
    return _train(f, "--classes", "liver")


@case(
    "train", "an earlier run in --output-dir without --overwrite", mentions=("--overwrite",), protect_out=True
)
def _(f):
    (f / "out" / "model").mkdir(parents=True)
    (f / "out" / "model" / "config.json").write_text("{}")
    return _train(f)


@case("train", "--resume latest with no checkpoint", mentions=("resume",))
def _(f):
    return _train(f, "--resume", "latest")


@case("train", "--push-to-hub without --hub-model-id", mentions=("hub_model_id",))
def _(f):
    return _train(f, "--push-to-hub")


@case("train", "--hub-model-id that is not a repo id", mentions=("hub_model_id",))
def _(f):
    return _train(f, "--push-to-hub", "--hub-model-id", "../../etc/passwd")


@case("train", "--use-depth-branch with --method lora", mentions=("use_depth_branch",))
def _(f):
    return _train(f, "--use-depth-branch", "--method", "lora")


@case("train", "--text-prompts without --text-encoder", mentions=("text_encoder",))
def _(f):
    return _train(f, "--text-prompts")


# ------------------------------------------------------------------------------------------------ pretraining
for flag, value, words in (
    ("--total-images", "0", ("total_images",)),
    ("--batch-size", "0", ("batch_size",)),
    ("--learning-rate", "0", ("learning_rate",)),
    ("--learning-rate", "inf", ("learning_rate",)),
    ("--eval-every", "0", ("eval_every",)),
    ("--total-images", "4", ("total_images",)),
):
    case("pretrain-base", f"{flag} {value}", mentions=words)(
        lambda f, flag=flag, value=value: ["pretrain-base", "--output-dir", out(f), flag, value]
    )


def _encoder(f: Path, *flags: str) -> list[str]:
    return ["pretrain-encoder", str(png_source(f)), "--output-dir", out(f), "--steps", "1", *flags]


@case("pretrain-encoder", "source folder does not exist", mentions=("nowhere",))
def _(f):
    return ["pretrain-encoder", str(f / "in" / "nowhere"), "--output-dir", out(f)]


@case("pretrain-encoder", "an unknown objective", mentions=("objective", "simclr"))
def _(f):
    return _encoder(f, "--objective", "simclr=1")


@case("pretrain-encoder", "--mask-ratio 1.5", mentions=("mask_ratio",))
def _(f):
    return _encoder(f, "--mask-ratio", "1.5")


@case("pretrain-encoder", "--learning-rate nan", mentions=("learning_rate",))
def _(f):
    return _encoder(f, "--learning-rate", "nan")


@case("pretrain-encoder", "--steps 0", mentions=("steps",))
def _(f):
    return _encoder(f, "--steps", "0")


@case("pretrain-encoder", "a folder with no images", mentions=("empty",))
def _(f):
    (f / "in" / "empty").mkdir(parents=True)
    return ["pretrain-encoder", str(f / "in" / "empty"), "--output-dir", out(f), "--steps", "1"]


# ------------------------------------------------------------------------------------------------ push
def _run_folder(f: Path) -> Path:
    run = f / "in" / "run"
    (run / "model").mkdir(parents=True)
    return run


for repo in ("", "a/b/c", "../../etc/passwd", "org/bad name!", "org/" + "x" * 100):
    case("push", f"repo id {repo[:30]!r}", mentions=("repo",))(
        lambda f, repo=repo: ["push", str(_run_folder(f)), repo, "--dry-run"]
    )


@case("push", "run folder does not exist", mentions=("nowhere",))
def _(f):
    return ["push", str(f / "in" / "nowhere"), "org/name", "--dry-run"]


@case("push", "run folder without a model", mentions=("model",))
def _(f):
    (f / "in" / "run").mkdir(parents=True)
    return ["push", str(f / "in" / "run"), "org/name", "--dry-run"]


@case("push", "--dataset-repo-id without --dataset", mentions=("--dataset",))
def _(f):
    return ["push", str(_run_folder(f)), "org/name", "--dry-run", "--dataset-repo-id", "org/data"]


@case("push", "--space-hardware without --space-repo-id", mentions=("--space-repo-id",))
def _(f):
    return ["push", str(_run_folder(f)), "org/name", "--dry-run", "--space-hardware", "zero-a10g"]


@case("push-space", "an --adapter without NAME=", mentions=("--adapter",))
def _(f):
    return ["push-space", "org/demo", "org/model", "--adapter", "org/liver", "--dry-run"]


@case("push-space", "a Space repo id with spaces", mentions=("repo",))
def _(f):
    return ["push-space", "org/my demo", "org/model", "--dry-run"]


@case("push-space", "a --hardware the Hub does not have", mentions=("--hardware", "zero-a10g"))
def _(f):
    return ["push-space", "org/demo", "org/model", "--hardware", "h100", "--dry-run"]


@case("push-space", "a --space-folder without app.py", mentions=("app.py",))
def _(f):
    (f / "in" / "space").mkdir(parents=True)
    (f / "in" / "space" / "README.md").write_text("my Space")
    return ["push-space", "org/demo", "org/model", "--space-folder", str(f / "in" / "space"), "--dry-run"]


@case("demo", "model folder does not exist", mentions=("nowhere",))
def _(f):
    return ["demo", str(f / "in" / "nowhere")]


@case("demo", "model config that is not JSON", mentions=("config.json",))
def _(f):
    model = model_folder(f)
    (model / "config.json").write_text("{not json")
    return ["demo", str(model)]


@case("demo", "an --adapter without NAME=", mentions=("--adapter",))
def _(f):
    return ["demo", "tiny", "--adapter", str(f / "in" / "liver")]


@case("demo", "an adapter folder that does not exist", mentions=("liver", "no such folder"))
def _(f):
    return ["demo", "tiny", "--adapter", f"liver={f / 'in' / 'liver'}"]


@case("demo", "an adapter folder that is a model folder", mentions=("liver", "adapter_config.json"))
def _(f):
    return ["demo", "tiny", "--adapter", f"liver={model_folder(f)}"]


@case("demo", "a device that does not exist", mentions=("gpu0", "cpu, cuda"))
def _(f):
    return ["demo", "tiny", "--device", "gpu0"]


# ------------------------------------------------------------------------------------------------ Space
def _session():
    from msa_hf import TINY_BASE, SamAdapterModel
    from msa_hf.demo.sessions import DemoSession

    if "session" not in _SHARED:
        _SHARED["session"] = DemoSession(SamAdapterModel.from_pretrained(TINY_BASE).eval())
    return _SHARED["session"]


def _image() -> np.ndarray:
    image = np.full((48, 48), 40, np.uint8)
    image[10:30, 12:34] = 200
    return image


def space(name: str, mentions: tuple[str, ...] = ()):
    return case("space", name, mentions=mentions)


@space("open a NIfTI in the image tab", mentions=("volume",))
def _(f):
    from msa_hf.demo.uploads import read_upload

    path = nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz"
    return lambda: read_upload(str(path))


@space("open random bytes named .png", mentions=("x.png",))
def _(f):
    from msa_hf.demo.uploads import read_upload

    path = f / "in" / "x.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(300))
    return lambda: read_upload(str(path))


@space("open a text file", mentions=("notes.txt",))
def _(f):
    from msa_hf.demo.uploads import read_upload

    path = f / "in" / "notes.txt"
    path.parent.mkdir(parents=True)
    path.write_text("hello")
    return lambda: read_upload(str(path))


@space("open a PNG claiming 100000 x 100000 pixels", mentions=("huge.png",))
def _(f):
    from msa_hf.demo.uploads import read_upload

    path = png_claiming(f / "in" / "huge.png", 100_000, 100_000)
    return lambda: read_upload(str(path))


@space("a click outside the image", mentions=("outside",))
def _(f):
    from msa_hf.demo.prompt_state import POSITIVE, add_prompt, empty_prompts

    return lambda: add_prompt(empty_prompts(), 60, 5, POSITIVE, (48, 48))


@space("a click in an unknown mode", mentions=("mode",))
def _(f):
    from msa_hf.demo.prompt_state import add_prompt, empty_prompts

    return lambda: add_prompt(empty_prompts(), 5, 5, "lasso", (48, 48))


@space("segment without a prompt", mentions=("click",))
def _(f):
    return lambda: _session().segment(_image(), [], None)


@space("segment with a NaN click", mentions=("nan",))
def _(f):
    return lambda: _session().segment(_image(), [[float("nan"), 5, 1]], None)


@space("segment with a click label of 5", mentions=("label",))
def _(f):
    return lambda: _session().segment(_image(), [[5, 5, 5]], None)


@space("segment with an unknown task adapter", mentions=("liver",))
def _(f):
    return lambda: _session().segment(_image(), [[5, 5, 1]], None, adapter="liver")


@space("segment a 4-D array", mentions=("shape",))
def _(f):
    return lambda: _session().segment(np.zeros((2, 2, 2, 2), np.uint8), [[1, 1, 1]], None)


@space("segment with a box of three numbers", mentions=("box",))
def _(f):
    return lambda: _session().segment(_image(), [], [1, 2, 3])


def _api(points: str, box: str):
    from msa_hf.demo.api import parse_api_prompts

    return lambda: parse_api_prompts(points, box)


@space("API points that are not JSON", mentions=("points",))
def _(f):
    return _api("[[1, 2", "")


@space("API points that are an object", mentions=("points",))
def _(f):
    return _api('{"x": 1}', "")


@space("API point without a label", mentions=("points",))
def _(f):
    return _api("[[1, 2]]", "")


@space("API point with a text coordinate", mentions=("points",))
def _(f):
    return _api('[["a", 2, 1]]', "")


@space("API box of two numbers", mentions=("box",))
def _(f):
    return _api("", "[1, 2]")


@space("API box that is not JSON", mentions=("box",))
def _(f):
    return _api("", "box please")


@space("open a volume of mixed files", mentions=("NIfTI",))
def _(f):
    from msa_hf.demo.sessions import VolumeSession

    paths = [str(picture(f)), str(nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz")]
    return lambda: VolumeSession(paths, _session())


@space("open a volume header claiming 1200^3 voxels", mentions=("bomb.nii.gz",))
def _(f):
    from msa_hf.demo.sessions import VolumeSession

    path = nifti_bomb(f / "in" / "bomb.nii.gz")
    return lambda: VolumeSession([str(path)], _session())


@space("volume upload: a zip that is random bytes", mentions=("export.zip", "not a readable zip"))
def _(f):
    from msa_hf.demo.sessions import VolumeSession

    path = f / "in" / "export.zip"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(600))
    return lambda: VolumeSession([str(path)], _session())


@space("volume upload: a zip without a DICOM file", mentions=("no DICOM file in the zip",))
def _(f):
    import zipfile

    from msa_hf.demo.sessions import VolumeSession

    path = f / "in" / "export.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("report.pdf", b"%PDF-1.4 not an image")
    return lambda: VolumeSession([str(path)], _session())


@space(
    "volume upload: a zip of more files than a study holds", mentions=("export.zip", "the demo takes up to")
)
def _(f):
    import zipfile

    from msa_hf.demo.sessions import VolumeSession
    from msa_hf.demo.uploads import MAX_ZIP_FILES

    path = f / "in" / "export.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(MAX_ZIP_FILES + 1):
            archive.writestr(f"IM{index:05d}", b"")
    return lambda: VolumeSession([str(path)], _session())


@space("propagate from an empty slice", mentions=("segment",))
def _(f):
    from msa_hf.demo.sessions import VolumeSession

    path = nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz"
    return lambda: VolumeSession([str(path)], _session()).propagate(2)


@space("API volume with a slice outside it", mentions=("slice: 10 is outside",))
def _(f):
    path = nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz"
    return lambda: _session().segment_volume([str(path)], 10, [], [2, 2, 8, 8])


@space("API volume without a prompt", mentions=("points and box",))
def _(f):
    path = nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz"
    return lambda: _session().segment_volume([str(path)], 2, [], None)


@space("API volume of several channels, none chosen", mentions=("3 channels (0, 1, 2)", "choose"))
def _(f):
    scan = four_d_scan(f)
    return lambda: _session().segment_volume([str(scan)], 1, [], [2, 2, 8, 8])


@space("an NRRD upload whose voxel data are cut short", mentions=("scan.nrrd", "cannot read the voxel data"))
def _(f):
    from msa_hf.demo.sessions import VolumeSession

    scan = itk_scan(f)
    scan.write_bytes(scan.read_bytes()[:-500])
    return lambda: VolumeSession([str(scan)], _session())


@space("keep a structure before segmenting one", mentions=("nothing is segmented",))
def _(f):
    from msa_hf.demo.sessions import VolumeSession

    path = nifti_source(f, count=1) / "imagesTr" / "case0_0000.nii.gz"
    return lambda: VolumeSession([str(path)], _session()).keep_structure("liver")


# ------------------------------------------------------------------------------------------------ runner
def _files(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {
        os.fsdecode(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def run_case(item: Case, folder: Path) -> dict[str, Any]:
    """Build and run one case in `folder`; returns `{"outcome", "code", "message"}`."""
    from msa_hf.cli import main

    folder.mkdir(parents=True)
    try:
        target = item.build(folder)
    except Exception as error:  # noqa: BLE001 - a broken case is reported, not fatal to the corpus
        return {"outcome": "broken case", "code": None, "message": f"{type(error).__name__}: {error}"}
    protected = _files(folder / "in")
    earlier_output = _files(folder / "out")
    stderr, stdout = io.StringIO(), io.StringIO()
    outcome, code = None, 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            if callable(target):
                try:
                    target()
                except ValueError as error:  # what the Space shows as a message on the page
                    print(str(error), file=sys.stderr)
                    code = 1
            else:
                try:
                    code = main(target)
                except SystemExit as exit_:  # argparse
                    code = exit_.code if isinstance(exit_.code, int) else 2
    except MemoryError:
        outcome = "blow-up"
    except BaseException:  # noqa: BLE001 - an escaped exception is exactly what this records
        print(traceback.format_exc(), file=stderr)
        outcome = "traceback"
    message = stderr.getvalue().strip()
    if outcome is None:
        staging = [name for name in _files(folder) if ".partial-" in name or "/.tmp-" in name]
        if _files(folder / "in") != protected or (
            (code != 0 or item.protect_out) and earlier_output and _files(folder / "out") != earlier_output
        ):
            outcome = "lost"
        elif staging:
            outcome = "half-written"
        elif "Traceback" in message or "unexpected error" in message:
            outcome = "traceback"
        elif item.expect == "error":
            named = all(word.lower() in message.lower() for word in item.mentions)
            outcome = "error" if code != 0 and message and named else ("silent" if code == 0 else "unclear")
        else:
            try:
                passed = code == 0 and (item.check is None or item.check(folder, stdout.getvalue()))
            except (OSError, KeyError, ValueError):  # the expected result is not there
                passed = False
            outcome = "handled" if passed else "silent"
    return {"outcome": outcome, "code": code, "message": _last_line(message).replace(str(folder), "<case>")}


def _last_line(message: str) -> str:
    """The last message in `message` that is not a progress bar (the entry point's own comes last), with the
    indented lines that continue it (a listing of what to choose from) joined on."""
    lines = [part.rstrip() for line in message.splitlines() for part in line.split("\r")]
    lines = [line for line in lines if line.strip() and "%|" not in line and "it/s]" not in line]
    start = max((i for i, line in enumerate(lines) if not line[:1].isspace()), default=0)
    return " ".join(line.strip() for line in lines[start:])


def run_corpus(root: Path) -> list[dict[str, Any]]:
    """Every case, each in its own folder under `root`."""
    results = []
    for index, item in enumerate(CASES):
        result = run_case(item, root / f"{index:03d}")
        results.append({"entry": item.entry, "name": item.name, "expect": item.expect, **result})
    return results


if __name__ == "__main__":
    import resource

    limit = int(float(os.environ.get("CORPUS_MEMORY_LIMIT_GB", "12")) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as work:
        outcomes = run_corpus(Path(work))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(sys.argv[1]).write_text(json.dumps({"cases": outcomes, "peak_resident_mb": peak_mb}, indent=1))
