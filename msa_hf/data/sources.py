# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Finding image/label pairs in the folder layouts the field uses.

2-D (`find_image_pairs`):
- `metadata.jsonl` (the `datasets` imagefolder convention): one JSON line per image with `file_name`,
  `label_file_name` and optionally `case_id` (several images of one patient share a case id).
- name rules: `case.png` + `case_mask.png` (also `_label`, `_seg`, `_gt`) in one folder, or the same
  name in sibling folders `images/` + `masks/` (or `labels/`).

3-D (`find_volume_pairs`):
- Decathlon / nnU-Net: `imagesTr/` + `labelsTr/` (`case_0000.nii.gz` channel suffix understood),
  BTCV: `img/img0001.nii.gz` + `label/label0001.nii.gz`, or `images/` + `labels/`.
- flat: `case.nii.gz` + `case_seg.nii.gz` / `_label` / `_mask`.
- DICOM: one sub-folder per series under `images/`, labels as NIfTI in `labels/` named like the folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from msa_hf.data.image_files import is_image_file
from msa_hf.data.volumes import is_nifti, nifti_stem

MASK_SUFFIXES = ("_mask", "_label", "_labels", "_seg", "_segmentation", "_gt")
IMAGE_FOLDER_NAMES = ("imagesTr", "images", "img", "image", "imgs")
LABEL_FOLDER_NAMES = ("labelsTr", "labels", "label", "masks", "mask", "segmentations", "seg", "gt")
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")  # nnU-Net: case_0000 is channel 0 of case
_ROLE_PREFIX = re.compile(r"^(img|image|label|labels|seg|mask)[_-]?(?=\d)", re.IGNORECASE)


class SourceLayoutError(ValueError):
    """The folder matches no supported layout; the message lists what was looked for."""


@dataclass
class CaseFiles:
    """One case: its id, its image (file or DICOM folder) and its label map (None when unpaired)."""

    case_id: str
    image: Path
    label: Path | None

    def __post_init__(self) -> None:
        # a file name that is not UTF-8 (it reaches Python as lone surrogates) cannot be stored as text:
        # keep its bytes visible as escapes, so the case is written and the user can find the file
        self.case_id = os.fsencode(self.case_id).decode("utf-8", "backslashreplace")


def _strip_mask_suffix(stem: str) -> str | None:
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return None


def pairing_key(stem: str) -> str:
    """The name an image and its label share: `img0001`/`label0001` -> `0001`, `case_0000` -> `case`,
    `case_mask` -> `case`."""
    stem = _strip_mask_suffix(stem) or stem
    stem = _CHANNEL_SUFFIX.sub("", stem)
    return _ROLE_PREFIX.sub("", stem)


def file_stem(path: Path) -> str:
    """The name a file pairs by: without its extension (`case.nii.gz`, `case.png` -> `case`); a folder's (a
    DICOM series) whole name, dots included."""
    return path.name if path.is_dir() else nifti_stem(path)


class LabelFolder:
    """The label maps (NIfTI or image files) of one folder, found for an input the way `msa-hf prepare` pairs
    them: the file of the same name, else the one that shares the input's `pairing_key` (an nnU-Net image
    `case_0000.nii.gz` -> `case.nii.gz`, BTCV's `img0001` -> `label0001`, `case.png` -> `case_mask.png`)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and (is_nifti(p) or is_image_file(p)))
        self._by_name = {p.name: p for p in files}
        self._by_key: dict[str, list[Path]] = {}
        for path in files:
            self._by_key.setdefault(pairing_key(file_stem(path)), []).append(path)

    def find(self, image: Path) -> Path | None:
        """`image`'s label map, or None when none pairs with it. Raises `ValueError` when several do."""
        if image.name in self._by_name:
            return self._by_name[image.name]
        found = self._by_key.get(pairing_key(file_stem(image)), [])
        if len(found) > 1:
            raise ValueError(
                f"{image.name}: {len(found)} label maps in {self.folder} pair with it "
                f"({', '.join(p.name for p in found)}); name the one to use in a manifest's labels column."
            )
        return found[0] if found else None


def _subfolder(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def find_image_pairs(root: str | Path) -> list[CaseFiles]:
    """Pair 2-D images with masks under `root` (see the module docstring for the layouts).

    Images with no mask are returned with `label=None`, so the caller can report them.
    """
    root = Path(root)
    metadata = root / "metadata.jsonl"
    if metadata.is_file():
        cases = []
        for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image = root / row["file_name"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise SourceLayoutError(
                    f"{metadata}:{number}: need a JSON object with 'file_name' and 'label_file_name' ({error})."
                ) from error
            label = row.get("label_file_name")
            cases.append(
                CaseFiles(str(row.get("case_id", Path(row["file_name"]).stem)), image, label and root / label)
            )
        return cases
    image_folder, label_folder = _subfolder(root, IMAGE_FOLDER_NAMES), _subfolder(root, LABEL_FOLDER_NAMES)
    if image_folder and label_folder:
        labels = {pairing_key(p.stem): p for p in sorted(label_folder.rglob("*")) if is_image_file(p)}
        return [
            CaseFiles(p.stem, p, labels.get(pairing_key(p.stem)))
            for p in sorted(image_folder.rglob("*"))
            if is_image_file(p)
        ]
    files = [p for p in sorted(root.rglob("*")) if is_image_file(p)]
    masks = {
        (p.parent, _strip_mask_suffix(p.stem)): p for p in files if _strip_mask_suffix(p.stem) is not None
    }
    cases = [
        CaseFiles(p.stem, p, masks.get((p.parent, p.stem)))
        for p in files
        if _strip_mask_suffix(p.stem) is None
    ]
    if not cases:
        raise SourceLayoutError(
            f"{root}: no images found. Expected metadata.jsonl, images/ + masks/, or case.png + case_mask.png."
        )
    return cases


def find_volume_pairs(root: str | Path) -> list[CaseFiles]:
    """Pair NIfTI volumes (or DICOM series folders) with NIfTI label maps under `root`."""
    root = Path(root)
    image_folder, label_folder = _subfolder(root, IMAGE_FOLDER_NAMES), _subfolder(root, LABEL_FOLDER_NAMES)
    if image_folder is not None:
        labels = {}
        if label_folder is not None:
            labels = {pairing_key(nifti_stem(p)): p for p in sorted(label_folder.iterdir()) if is_nifti(p)}
        cases = []
        for entry in sorted(image_folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if is_nifti(entry) or entry.is_dir():  # a sub-folder is a DICOM series
                stem = nifti_stem(entry) if is_nifti(entry) else entry.name
                cases.append(CaseFiles(pairing_key(stem), entry, labels.get(pairing_key(stem))))
        return cases
    volumes = [p for p in sorted(root.rglob("*")) if is_nifti(p)]
    masks = {
        (p.parent, _strip_mask_suffix(nifti_stem(p))): p for p in volumes if _strip_mask_suffix(nifti_stem(p))
    }
    cases = [
        CaseFiles(nifti_stem(p), p, masks.get((p.parent, nifti_stem(p))))
        for p in volumes
        if _strip_mask_suffix(nifti_stem(p)) is None
    ]
    if not cases:
        raise SourceLayoutError(
            f"{root}: no volumes found. Expected imagesTr/ + labelsTr/ (Decathlon), img/ + label/ (BTCV), "
            "images/ + labels/ with NIfTI files or DICOM series folders, or case.nii.gz + case_seg.nii.gz."
        )
    return cases


def detect_source_kind(root: str | Path) -> str:
    """`"volumes"` when `root` holds NIfTI files or DICOM series, `"images"` when it holds 2-D images."""
    root = Path(root)
    if not root.is_dir():
        raise SourceLayoutError(f"{root}: not a folder.")
    for path in root.rglob("*"):
        if is_nifti(path) or path.suffix.lower() == ".dcm":
            return "volumes"
    for path in root.rglob("*"):
        if is_image_file(path):
            return "images"
    raise SourceLayoutError(f"{root}: holds no NIfTI, DICOM (.dcm) or image (PNG/JPEG/TIFF/BMP) files.")
