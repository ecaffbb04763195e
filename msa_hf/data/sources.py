# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Finding image/label pairs in the folder layouts the field uses.

2-D (`find_image_pairs`):
- `metadata.jsonl` (the `datasets` imagefolder convention): one JSON line per image with `file_name`,
  `label_file_name` and optionally `case_id` (several images of one patient share a case id).
- name rules: `case.png` + `case_mask.png` (also `_label`, `_seg`, `_gt`) in one folder, or the same
  name in sibling folders `images/` + `masks/` (or `labels/`), sub-folders pairing with sub-folders; where
  image names repeat across sub-folders (`images/<patient>/001.png`), each sub-folder is one case.

In the image/label folder layouts an image finds its label map by name (`LabelIndex`), the rule that
`msa-hf predict --prompts-from-labels` uses too.

3-D (`find_volume_pairs`):
- Decathlon / nnU-Net: `imagesTr/` + `labelsTr/` (`case_0000.nii.gz` channel suffix understood; a case's
  several channel files are one case), BTCV: `img/img0001.nii.gz` + `label/label0001.nii.gz`, or `images/` +
  `labels/`.
- flat or in folders, paired within each folder by what the names say (`file_role`): `case.nii.gz` +
  `case_seg.nii.gz` / `_label` / `_mask`; LiTS's `volume-0.nii` + `segmentation-0.nii`; KiTS's one folder per
  case holding `imaging.nii.gz` + `segmentation.nii.gz`; BraTS's one folder per case holding its sequences
  (`BraTS2021_00000_flair.nii.gz`, `_t1`, `_t1ce`, `_t2`; BraTS 2023's `-t1c`, `-t2f`, ...) + `_seg`, one channel
  per sequence.
- any of these with NRRD (`.nrrd`, `.nhdr`: 3D Slicer's, its segmentations `case.seg.nrrd`) or MetaImage
  (`.mha`, `.mhd`: grand-challenge.org's) files in place of NIfTI, read through SimpleITK (`itk_files`).
- DICOM: one sub-folder per series under `images/`, labels as NIfTI, DICOM-SEG or RT structure sets in
  `labels/` named like the folder; or, as a PACS or an archive exports them, one folder per patient holding
  its series and the label object drawn on one of them (`dicom_study_cases`).
- one mask file per structure (`structure_files`): a case's label map may be a folder of them, named like
  the case in `labels/`; or, as the TotalSegmentator dataset lays it out, one folder per case holding its
  image and such a folder (`s0001/ct.nii.gz` + `s0001/segmentations/liver.nii.gz`, `structure_folder_cases`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from msa_hf.data.image_files import is_dicom_file, is_image_file
from msa_hf.data.structure_files import is_structure_folder
from msa_hf.data.volumes import VOLUME_FILE_NAMES, is_enhanced_dicom_file, is_volume_file, volume_file_stem

MASK_SUFFIXES = ("_mask", "_label", "_labels", "_seg", "_segmentation", "_gt")
PREDICTION_SUFFIXES = ("_pred", "_prediction", *MASK_SUFFIXES)  # what other tools append to a predicted mask
IMAGE_FOLDER_NAMES = ("imagesTr", "images", "img", "image", "imgs")
LABEL_FOLDER_NAMES = ("labelsTr", "labels", "label", "masks", "mask", "segmentations", "seg", "gt")
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")  # nnU-Net: case_0000 is channel 0 of case
LABEL_ROLES = ("segmentation", "seg", "label", "labels", "mask", "gt")  # a file named as its role
IMAGE_ROLES = ("imaging", "image", "img", "volume", "vol")
_ROLE_PREFIX = re.compile(
    rf"^({'|'.join(LABEL_ROLES + IMAGE_ROLES)})[_-]?(?=\d)", re.IGNORECASE
)  # BTCV's img0001 / label0001, LiTS's volume-0 / segmentation-0
_NUMBERED_ROLE = re.compile(r"^(?P<role>[A-Za-z]+)[_-]?(?P<id>\d.*)$")  # segmentation-0: role, then case id


class SourceLayoutError(ValueError):
    """The folder matches no supported layout; the message lists what was looked for."""


@dataclass
class CaseFiles:
    """One case: its id, its image (file or DICOM folder) and its label map (None when unpaired); `channels`,
    an nnU-Net case's image files by channel (`case_0000`, `case_0001`, ...) where it has several, `image`
    being the first."""

    case_id: str
    image: Path
    label: Path | None
    channels: dict[int, Path] = field(default_factory=dict)
    problem: str | None = None  # why no label map was chosen where the layout found several
    channel_names: dict[int, str] = field(default_factory=dict)  # a channel's sequence, where files name it

    def __post_init__(self) -> None:
        # a file name that is not UTF-8 (it reaches Python as lone surrogates) cannot be stored as text:
        # keep its bytes visible as escapes, so the case is written and the user can find the file
        self.case_id = os.fsencode(self.case_id).decode("utf-8", "backslashreplace")


def _strip_mask_suffix(stem: str) -> str | None:
    """`stem` without a mask suffix (`case_seg` -> `case`; `case-seg`, as BraTS 2023 names them, and
    `case.seg`, as 3D Slicer names a segmentation, `case.seg.nrrd`, too), or None where it has none."""
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith((suffix, "-" + suffix[1:], "." + suffix[1:])):
            return stem[: -len(suffix)]
    return None


def is_hidden(path: Path, root: Path) -> bool:
    """Whether `path` (under `root`) is a file the system left rather than the user's: a dot file (macOS's
    `._case.nii.gz` copies, which the Decathlon's archives carry beside every volume, `.DS_Store`) or
    anything in a dot folder or `__MACOSX/`."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(root).parts)


def visible_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The files in `folder` (and in its sub-folders with `recursive`), sorted, hidden ones left out."""
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in entries if p.is_file() and not is_hidden(p, folder))


def file_stem(path: Path) -> str:
    """The name a file pairs by: without its extension (`case.nii.gz`, `case.png` -> `case`); a folder's (a
    DICOM series) whole name, dots included."""
    return path.name if path.is_dir() else volume_file_stem(path)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _image_names(stem: str) -> list[str]:
    """The names an image may share with its label map, most literal first: its own, without an nnU-Net
    channel suffix (`case_0000` -> `case`), without a role prefix (`img0001` -> `0001`), without both."""
    bare = _CHANNEL_SUFFIX.sub("", stem)
    return _unique([stem, bare, _ROLE_PREFIX.sub("", stem), _ROLE_PREFIX.sub("", bare)])


def _label_names(stem: str) -> list[str]:
    """The names a label map may share with its image: its own, without a mask suffix (`case_seg` ->
    `case`), without a role prefix (`label0001` -> `0001`), without both."""
    bare = _strip_mask_suffix(stem) or stem
    return _unique([stem, bare, _ROLE_PREFIX.sub("", stem), _ROLE_PREFIX.sub("", bare)])


PAIRING_RULE = (
    "A label map pairs with its image by the same file name, or by the name they share without a channel suffix, "
    "a role prefix or a mask suffix (case_0000.nii.gz -> case.nii.gz, img0001 -> label0001, case.png -> "
    "case_mask.png)."
)  # what the refusals of an unpaired image say; `LabelIndex` is the rule itself


def listed_names(paths: list[Path], shown: int = 5) -> str:
    """The names of the first `shown` of `paths`, and how many more: what a refusal of unpaired files lists."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(p.name for p in paths[:shown]) + more


class LabelIndex:
    """Label maps found for an image by name: the one rule `msa-hf prepare` and `msa-hf predict
    --prompts-from-labels` pair by. A label map named as the image is by one of its names (`_image_names`: its
    own, without an nnU-Net channel suffix, without a role prefix) pairs with it; failing that, one that has
    such a name among its own names (`_label_names`: also without a mask suffix). So `patient_0001` pairs with
    `patient_0001`, nnU-Net's `case_0000` (and `case_0001`, its second channel) with `case`, BTCV's `img0001`
    with `label0001`, and `case` with `case_seg`; numbered cases are never shortened to one name."""

    def __init__(self, labels: list[Path], names: list[str] | None = None) -> None:
        """`labels`, each known by `names` (default: its file name, `file_stem`)."""
        self._by_stem: dict[str, list[Path]] = {}
        self._by_name: dict[str, list[Path]] = {}
        for path, stem in zip(labels, names or [file_stem(path) for path in labels], strict=True):
            self._by_stem.setdefault(stem, []).append(path)
            for name in _label_names(stem):
                self._by_name.setdefault(name, []).append(path)

    @classmethod
    def in_folder(cls, folder: str | Path) -> LabelIndex:
        """The volume, image and DICOM(-SEG) files in `folder` (`visible_files`) and its folders of one mask
        per structure (`label_folders`); or, where it is a dataset that keeps each case's label map beside its
        image (`labelled_case_folders`: TotalSegmentator's, KiTS's, LiTS's) or, holding no such files, a DICOM
        download of one folder per patient (`dicom_study_cases`), each case's label map alone, known by its
        case (`s0001.nii.gz` pairs with `s0001/segmentations/`, `case_00000.nii.gz` with
        `case_00000/segmentation.nii.gz`, `0.nii.gz` with `segmentation-0.nii`, `patient1.nii.gz` with the RT
        structure set inside `patient1/`)."""
        folder = Path(folder)
        # a dataset keeping its label maps beside its images: the label maps alone, known by their cases
        cases = labelled_case_folders(folder) if folder.is_dir() else []
        files = [
            p for p in visible_files(folder) if is_volume_file(p) or is_image_file(p) or is_dicom_file(p)
        ]
        files += label_folders(folder)
        if not cases and not files and folder.is_dir():
            cases = dicom_study_cases(folder)
        if cases:
            labelled = [case for case in cases if case.label is not None]
            return cls([case.label for case in labelled], [case.case_id for case in labelled])
        return cls(files)

    def find(self, image: Path) -> tuple[Path | None, str]:
        """`image`'s label map (None when none pairs with it) and the name they share, which is the case's id
        (the image's own name when unpaired). Raises `SourceLayoutError` when two label maps pair with it
        equally well."""
        names = _image_names(file_stem(image))
        for table in (self._by_stem, self._by_name):
            for name in names:
                found = table.get(name, [])
                if len(found) > 1:
                    raise SourceLayoutError(
                        f"{image}: {len(found)} label maps pair with it by name "
                        f"({', '.join(str(p) for p in found)}); rename one, or list the pairs in a manifest."
                    )
                if found:
                    return found[0], name
        return None, file_stem(image)

    def find_for_mask(self, mask: Path) -> tuple[Path | None, str]:
        """A predicted mask's label map: as an image's (`find`), else by its name without a prediction
        suffix (`case_pred.nii.gz`, `case_seg.png` -> `case`; `case-seg`, and `case.seg.nrrd` as 3D Slicer names
        a segmentation, too), as other tools name their outputs."""
        label, name = self.find(mask)
        stem = file_stem(mask)
        for suffix in PREDICTION_SUFFIXES if label is None else ():
            spelt = (suffix, "-" + suffix[1:], "." + suffix[1:])
            if stem.lower().endswith(spelt) and len(stem) > len(suffix):
                return self.find(mask.with_name(stem[: -len(suffix)] + mask.name[len(stem) :]))
        # `case.seg.nrrd` paired with `case.seg.nrrd` (3D Slicer's names on both sides) is case `case`
        return label, name[: -len(".seg")] if name.lower().endswith(".seg") and len(name) > 4 else name


def label_folders(folder: Path) -> list[Path]:
    """The sub-folders of `folder` that hold one mask file per structure (`structure_files`): each one case's
    label map, known by the folder's name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not is_hidden(p, folder) and is_structure_folder(p))


def structure_folder_cases(root: Path) -> list[CaseFiles]:
    """One case per folder under `root` that holds its image (one volume file) beside a folder of one mask per
    structure (`structure_files`), as the TotalSegmentator dataset is laid out (`s0001/ct.nii.gz` +
    `s0001/segmentations/`); a case folder with several images or several such folders keeps no label map
    and says why. Empty where no folder holds a structure folder (not this layout)."""
    cases, labelled = [], False
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root)):
        images = [p for p in visible_files(folder) if is_volume_file(p)]
        if any(file_role(volume_file_stem(p))[0] == "label" for p in images):
            continue  # a label map beside the image (KiTS23's, with its instances/ folder): `_cases_by_role`
        structures = label_folders(folder)
        labelled = labelled or bool(structures)
        if not images:
            continue
        problem = None
        if len(images) > 1 or len(structures) > 1:
            listed = ", ".join(p.name for p in [*images, *structures])
            problem = (
                f"{folder}: {len(images)} volume file(s) and {len(structures)} folder(s) of structure masks ({listed}); "
                "keep one image (a volume file) and one folder of its structures per case folder."
            )
        label = structures[0] if len(structures) == 1 and problem is None else None
        cases.append(CaseFiles(folder.name, images[0], label, problem=problem))
    return cases if labelled else []


def labelled_case_folders(root: Path) -> list[CaseFiles]:
    """The labelled cases of a dataset under `root` that keeps each case's label map beside its image: one
    folder per case holding its image and a folder of its structure files (`structure_folder_cases`,
    TotalSegmentator's), or volumes paired within their folders by name (`file_role`: KiTS's case folders,
    LiTS's `volume-N` beside `segmentation-N`, BraTS's sequences beside their `_seg`). Empty where `root`
    is laid out otherwise."""
    if cases := structure_folder_cases(root):
        return cases
    volumes = [p for p in visible_files(root, recursive=True) if is_volume_file(p)]
    return [case for case in _cases_by_role(volumes) if case.label is not None]


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
        # images in sub-folders pair with the masks of the same sub-folder; where slice names repeat across
        # sub-folders (images/<patient>/001.png), a name says nothing of the patient: each sub-folder is a case
        label_files = [p for p in visible_files(label_folder, recursive=True) if is_image_file(p)]
        in_subfolder: dict[Path, list[Path]] = {}
        for path in label_files:
            in_subfolder.setdefault(path.parent.relative_to(label_folder), []).append(path)
        indexes = {folder: LabelIndex(files) for folder, files in in_subfolder.items()}
        everywhere = LabelIndex(label_files)
        images = [p for p in visible_files(image_folder, recursive=True) if is_image_file(p)]
        folders = [p.parent.relative_to(image_folder) for p in images]
        stems = [p.stem for p in images]
        by_folder = len(set(zip(stems, folders, strict=True))) > len(set(stems))
        cases = []
        for image, folder in zip(images, folders, strict=True):
            case_id = folder.parts[0] if by_folder and folder.parts else image.stem
            cases.append(CaseFiles(case_id, image, indexes.get(folder, everywhere).find(image)[0]))
        return cases
    files = [p for p in visible_files(root, recursive=True) if is_image_file(p)]
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


def _add_channel(case: CaseFiles, image: Path) -> None:
    """Another image that pairs with `case`'s label map: one more of its nnU-Net channel files, or a clash."""
    files = [case.image, image] if not case.channels else [*case.channels.values(), image]
    channels = {}
    for path in files:
        match = _CHANNEL_SUFFIX.search(file_stem(path))
        if match is None or file_stem(path)[: match.start()] != case.case_id:
            raise SourceLayoutError(
                f"{', '.join(str(p) for p in files)} all pair with the label map {case.label} (case "
                f"{case.case_id}); rename them so that each image has its own label map."
            )
        channels[int(match.group(0)[1:])] = path
    case.channels = dict(sorted(channels.items()))
    case.image = next(iter(case.channels.values()))


def find_volume_pairs(root: str | Path, dicom_labels: str | None = None) -> list[CaseFiles]:
    """Pair volume files (NIfTI, NRRD, MetaImage; or DICOM series folders) with label maps in such files (or DICOM-SEG files, for series)
    under `root`: one case per id (an nnU-Net case's channel files are one case); or, where `root` holds
    neither, one case per folder of DICOM files that holds its series and a label object drawn on one of them
    (`dicom_study_cases`; `dicom_labels` chooses "seg" or "rtstruct" where a folder holds both). Raises
    `SourceLayoutError` for two cases of one name."""
    root = Path(root)
    image_folder, label_folder = _subfolder(root, IMAGE_FOLDER_NAMES), _subfolder(root, LABEL_FOLDER_NAMES)
    if image_folder is not None:
        # label maps: volume files, or DICOM-SEG files drawn on the DICOM series they pair with
        labels = LabelIndex(
            [p for p in visible_files(label_folder) if is_volume_file(p) or is_dicom_file(p)]
            + label_folders(label_folder)
            if label_folder
            else []
        )
        paired: dict[str, CaseFiles] = {}
        for entry in sorted(image_folder.iterdir()):
            is_series = entry.is_dir()  # a sub-folder is a DICOM series (or study)
            is_volume = is_volume_file(entry) or is_series or is_enhanced_dicom_file(entry)
            if is_hidden(entry, image_folder) or not is_volume:
                continue
            label, case_id = labels.find(entry)
            if case_id not in paired:
                paired[case_id] = CaseFiles(case_id, entry, label)
            else:
                _add_channel(paired[case_id], entry)
        return list(paired.values())
    if by_case_folder := structure_folder_cases(root):
        return by_case_folder
    volumes = [p for p in visible_files(root, recursive=True) if is_volume_file(p)]
    if not volumes and (studies := dicom_study_cases(root, dicom_labels)):
        return studies
    by_id: dict[str, CaseFiles] = {}
    for case in _cases_by_role(volumes):
        if (
            case.case_id in by_id
        ):  # files named alike in two sub-folders: one would replace the other downstream
            raise SourceLayoutError(
                f"{by_id[case.case_id].image} and {case.image} are both case {case.case_id}; give each case a "
                "name of its own."
            )
        by_id[case.case_id] = case
    cases = list(by_id.values())
    if not cases:
        raise SourceLayoutError(
            f"{root}: no volumes found. Expected imagesTr/ + labelsTr/ (Decathlon), img/ + label/ (BTCV), "
            "images/ + labels/ with volume files (NIfTI, NRRD, MetaImage) or DICOM series folders, case.nii.gz + case_seg.nii.gz, "
            "volume-0.nii + segmentation-0.nii (LiTS), one folder per case holding imaging.nii.gz + "
            "segmentation.nii.gz (KiTS) or its sequences + case_seg.nii.gz (BraTS), one folder per case holding "
            "its image and a folder of one mask per structure (TotalSegmentator), or one folder per patient "
            "holding its DICOM series and a DICOM-SEG or RT structure set drawn on them."
        )
    return cases


def file_role(stem: str) -> tuple[str, str]:
    """What a volume file's name (`stem`, without its extension) says it is, "image" or "label", and the case
    id it names ("" where the name is a role alone, the case being its folder): a label by its role
    (`segmentation`, as KiTS names it; `segmentation-0`, LiTS; `label0001`, BTCV) or a mask suffix (`case_seg`,
    `case-seg`: BraTS); an image by its role (`imaging`, `volume-0`, `img0001`), else by its own name."""
    lower = stem.lower()
    for role, names in (("label", LABEL_ROLES), ("image", IMAGE_ROLES)):
        if lower in names:
            return role, ""
        numbered = _NUMBERED_ROLE.match(stem)
        if numbered and numbered["role"].lower() in names:
            return role, numbered["id"]
    bare = _strip_mask_suffix(stem)
    if bare and bare.lower() in LABEL_ROLES:  # Slicer's `Segmentation.seg.nrrd`: a role alone
        return "label", ""
    return ("label", bare) if bare else ("image", stem)


def _cases_by_role(volumes: list[Path]) -> list[CaseFiles]:
    """Cases of volume files `volumes` paired within their folders by `file_role`: a label map with the images of its
    case id; one named by a role alone (`segmentation.nii.gz`) with the folder's image named so
    (`imaging.nii.gz`) or its only image, the folder's name being the case id; one with a case id and no image
    of that name (`BraTS2021_00000_seg`) with the images that name it followed by a sequence
    (`BraTS2021_00000_flair`, `_t1`, ...), one channel each, in the order of the sequences' names. Images that
    no label map takes are cases without one, except those in folders under a case folder (KiTS's
    `instances/`: other annotations)."""
    by_folder: dict[Path, list[Path]] = {}
    for path in volumes:
        by_folder.setdefault(path.parent, []).append(path)
    cases: list[CaseFiles] = []
    unpaired: list[Path] = []
    case_folders: set[Path] = set()  # folders that are one case each (a label map named by its role alone)
    for folder, files in by_folder.items():
        stems = {path: volume_file_stem(path) for path in files}
        roles = [(path, *file_role(stems[path])) for path in files]
        # an image is known by its name and by the case id its role names (vol1 and 1 for vol1.nii.gz)
        images = {path: {stems[path], case_id} for path, role, case_id in roles if role == "image"}
        for label, _, case_id in (entry for entry in roles if entry[1] == "label"):
            named = [path for path, names in images.items() if case_id in names]
            if not named and not case_id and len(images) == 1:
                named = list(images)
            sequences = {
                stems[path][len(case_id) + 1 :]: path
                for path in images
                if case_id and stems[path][: len(case_id) + 1] in (f"{case_id}_", f"{case_id}-")
            }
            if not case_id:
                case_folders.add(folder)
            if len(named) == 1:
                cases.append(CaseFiles(case_id or folder.name, named[0], label))
                del images[named[0]]
            elif len(named) > 1:
                listed = ", ".join(path.name for path in named)
                problem = f"{label}: {len(named)} images pair with it ({listed}); keep one per label map."
                cases.append(CaseFiles(case_id or folder.name, named[0], None, problem=problem))
                for path in named:
                    del images[path]
            elif sequences:
                channels = dict(enumerate(path for _, path in sorted(sequences.items())))
                case = CaseFiles(case_id, channels[0], label, channels=channels)
                case.channel_names = dict(enumerate(sorted(sequences)))
                cases.append(case)
                for path in sequences.values():
                    del images[path]
        unpaired.extend(images)
    for path in unpaired:  # cases without a label map, but not the other annotations inside a case folder
        if not (case_folders and case_folders.intersection(path.parents[1:])):
            named_by_role = file_role(volume_file_stem(path)) == (
                "image",
                "",
            )  # imaging.nii.gz: its folder's case
            cases.append(CaseFiles(path.parent.name if named_by_role else volume_file_stem(path), path, None))
    return sorted(cases, key=lambda case: str(case.image))


def dicom_study_cases(root: Path, dicom_labels: str | None = None) -> list[CaseFiles]:
    """One case per folder under `root` that holds DICOM files, as a PACS export or an archive (TCIA) lays a
    dataset out: a patient's (or study's) folder with its series and, somewhere inside, the DICOM-SEG or RT
    structure set drawn on one of them (`dicom_seg_labels.dicom_label_kind`). The case's image is the folder
    (the series the label object references is read: `seg_series`), its label that file. A folder without one
    is a case without a label map; a folder with several (a SEG beside an RTSTRUCT, two annotators) keeps none
    and says why, unless `dicom_labels` ("seg" or "rtstruct") leaves one. Empty where no folder holds a label
    object (not this layout)."""
    from msa_hf.data.dicom_seg_labels import dicom_label_kind

    cases, labelled = [], False
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root)):
        files = [p for p in visible_files(folder, recursive=True) if is_dicom_file(p)]
        if not files:
            continue
        found = [(p, kind) for p in files if (kind := dicom_label_kind(p)) is not None]
        labelled = labelled or bool(found)
        chosen = [p for p, kind in found if dicom_labels in (None, kind)]
        problem = None
        if found and not chosen:
            kinds = ", ".join(sorted({kind for _, kind in found}))
            problem = f"{folder}: its label objects are {kinds}, and --dicom-labels asks for {dicom_labels}."
        if len(chosen) > 1:
            listed = ", ".join(f"{p.relative_to(folder)} ({kind})" for p, kind in found if p in chosen)
            problem = (
                f"{folder}: {len(chosen)} label objects ({listed}); keep one per case folder, or choose the kind "
                "to read with --dicom-labels seg or rtstruct."
            )
        cases.append(CaseFiles(folder.name, folder, chosen[0] if len(chosen) == 1 else None, problem=problem))
    return cases if labelled else []


def detect_source_kind(root: str | Path) -> str:
    """`"volumes"` when `root` holds volume files (NIfTI, NRRD, MetaImage) or DICOM series, `"images"` when it holds 2-D images."""
    root = Path(root)
    if not root.is_dir():
        raise SourceLayoutError(f"{root}: not a folder.")
    files = visible_files(root, recursive=True)
    if any(is_volume_file(path) or path.suffix.lower() == ".dcm" for path in files):
        return "volumes"
    if any(is_image_file(path) for path in files):
        return "images"
    raise SourceLayoutError(
        f"{root}: holds no volume ({VOLUME_FILE_NAMES}), DICOM (.dcm) or image (PNG/JPEG/TIFF/BMP) files."
    )


def read_manifest(manifest: Path, expected: str) -> list[dict]:
    """The rows of a manifest: a CSV file (a header of column names) or a JSON list of objects, in order.
    `expected` says what a row holds, for the message of a manifest that holds no rows ("rows with an "input"
    column (CSV) or a JSON list of objects like {...}").

    Raises:
        ValueError: an unreadable file, or one that is not a non-empty list of rows.
    """
    import csv

    try:
        if manifest.suffix.lower() == ".csv":
            with manifest.open(newline="", encoding="utf-8") as handle:
                rows: object = list(csv.DictReader(handle))
        else:
            rows = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise ValueError(f"manifest {manifest}: cannot read it ({error}).") from error
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"manifest {manifest}: expected {expected}.")
    return rows
