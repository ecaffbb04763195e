# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The image stacks of a DICOM folder, and choosing the one to read.

A folder exported from a PACS or a scanner rarely holds one series: a study brings its localizer, its axial
series, its reformats, each in a sub-folder of its own or all mixed together (`DICOM/PAT1/STD1/SER2/IM0001`,
a `DICOMDIR` beside them). And one series is not always one volume: a localizer takes three planes in one
series, a dual-energy, multi-echo or multi-phase acquisition puts two or more images at every position.
Stacking such slices by their position would interleave two volumes (or three planes) into one without a word.

So a folder is read as *stacks*: the slices of one series, one orientation and one acquisition (told apart by
the first of `ACQUISITION_ATTRIBUTES` that gives each position one slice), each with a key to choose it by: the
series number (`2`), with the orientation or the acquisition where a series holds several (`1/coronal`,
`3/EchoNumbers=2`), or the series instance UID. An enhanced multi-frame file (a whole CT/MR volume in one file,
its frames carrying their positions) is a stack of its own. A folder of one stack is read as it is; a folder of
several needs its choice, and the refusal lists them (number, slices, orientation, modality, description) with
the way to choose. Only headers are read here: the pixels of the chosen stack alone are decoded later.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.data.image_files import MULTI_FRAME_ADVICE, has_dicom_marker
from msa_hf.data.volumes import VolumeReadError, frame_value

# attributes that tell apart images at one position of one series, most specific first: the echoes of a
# multi-echo MR, the phases of a dynamic or cardiac series, the acquisitions of a dual-energy CT
ACQUISITION_ATTRIBUTES = (
    "EchoNumbers",
    "TemporalPositionIdentifier",
    "AcquisitionNumber",
    "TriggerTime",
    "DiffusionBValue",
    "ImageType",
    "AcquisitionTime",
)
# the same for the frames of one enhanced multi-frame file (functional group, attribute), where a file holds
# several volumes at the same positions: the stacks of a multi-stack file, the echoes of a multi-echo MR, the
# phases of a dynamic series, the b-values of a diffusion series, the acquisitions of a converted series
FRAME_ATTRIBUTES = (
    ("FrameContentSequence", "StackID"),
    ("MREchoSequence", "EffectiveEchoTime"),
    ("FrameContentSequence", "TemporalPositionIndex"),
    ("MRDiffusionSequence", "DiffusionBValue"),
    ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"),
    ("FrameContentSequence", "FrameAcquisitionNumber"),
)
# the plane a stack's normal is closest to (RAS/LPS axis 0, 1, 2)
PLANE_NAMES = ("sagittal", "coronal", "axial")


@dataclass
class DicomStack:
    """One volume of a DICOM folder: slices of one series, orientation and acquisition (headers only)."""

    key: str  # what `series=` / `--series` chooses it by
    series_uid: str
    series_number: str
    description: str
    modality: str
    orientation: str  # axial, coronal, sagittal, or "oblique"
    files: list[Path] = field(default_factory=list)
    frames: int | None = None  # an enhanced multi-frame file (`files` is that one file): its frames
    # the file's frames this stack is (indices from 0), where the file holds several volumes; None: all of them
    frame_indices: tuple[int, ...] | None = None

    @property
    def multi_frame(self) -> bool:
        """Whether the stack is one enhanced multi-frame file rather than a series of single-frame files."""
        return self.frames is not None

    def describe(self) -> str:
        """One line of the listing: `2: 24 axial CT slices, "Abdomen 2.0 axial"`."""
        count = self.frames if self.frames is not None else len(self.files)
        kind = (
            f"slice{'s' * (count != 1)}"
            if not self.multi_frame
            else "frames in one file"
            if self.frame_indices is None
            else "frames of one file"
        )
        text = f"{self.key}: {count} {self.orientation} {self.modality} {kind}"
        return f'{text}, "{self.description}"' if self.description else text


@dataclass(eq=False)
class _Header:
    file: Path
    dataset: Any
    enhanced: bool = False  # an enhanced multi-frame volume rather than one slice

    def get(self, name: str) -> str:
        value = self.dataset.get(name, "")
        return "\\".join(str(v) for v in value) if _is_sequence_value(value) else str(value)


class SeveralStacks(VolumeReadError):
    """A DICOM folder of several image stacks read without choosing one; `stacks` are they, in listing order,
    for a caller (the demo) to offer the choice."""

    def __init__(self, stacks: list[DicomStack], message: str) -> None:
        super().__init__(message)
        self.stacks = stacks


def find_stacks(folder: str | Path) -> list[DicomStack]:
    """The image stacks under `folder` (every sub-folder included), in series-number order.

    Files that are not DICOM images (a DICOMDIR, a report, a README, files the system left) are passed over.

    Raises:
        VolumeReadError: no DICOM image slices (naming enhanced multi-frame files, which are not read), a
            DICOM file that cannot be read, or images at one position that no attribute tells apart.
    """
    import pydicom

    from msa_hf.data.sources import visible_files

    folder = Path(folder)
    images: list[_Header] = []  # single slices, and enhanced multi-frame files (each a volume in one file)
    multi_frame: list[Path] = []  # other multi-frame files (a cine loop), which are not read
    # an enhanced multi-frame file may be given itself: its own stacks
    for file in [folder] if folder.is_file() else visible_files(folder, recursive=True):
        try:
            dataset = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception as error:
            if has_dicom_marker(file):  # a slice of a series that cannot be read: refuse, never skip
                raise VolumeReadError(
                    f"{file}: a DICOM file that cannot be read ({type(error).__name__}: {error}); reading its "
                    "series without it would leave a gap. Replace it with an intact copy or re-export the series."
                ) from error
            continue  # not DICOM (e.g. a README)
        if has_dicom_marker(file) and len(dataset) == 0:  # the file meta and nothing else: truncated
            raise VolumeReadError(
                f"{file}: a DICOM file that cannot be read (it ends after its header, so it is truncated); "
                "reading its series without it would leave a gap. Replace it with an intact copy or re-export "
                "the series."
            )
        if "ImagePositionPatient" in dataset and "ImageOrientationPatient" in dataset and "Rows" in dataset:
            images.append(_Header(file, dataset))
        elif is_enhanced_volume(dataset):
            images.append(_Header(file, dataset, enhanced=True))
        elif (
            "Rows" in dataset
            and int(dataset.get("NumberOfFrames", 1) or 1) > 1
            and dataset.get("Modality") != "SEG"
        ):
            multi_frame.append(file)  # a segmentation is not an image to read
    if not images:
        found = (
            f"; it holds multi-frame images ({', '.join(str(f) for f in multi_frame[:3])}), a whole series in "
            f"one file: {MULTI_FRAME_ADVICE}"
            if multi_frame
            else ""
        )
        raise VolumeReadError(
            f"{folder}: no DICOM image slices (files with pixel data and a position in the patient){found}."
        )
    by_series: dict[str, list[_Header]] = defaultdict(list)
    for header in images:
        by_series[header.get("SeriesInstanceUID")].append(header)
    numbers = [next(iter(headers)).get("SeriesNumber") for headers in by_series.values()]
    stacks = []
    for (series_uid, headers), number in zip(by_series.items(), numbers, strict=True):
        # a series is named by its number where that number is its own in the folder, else by its UID
        name = number if number and numbers.count(number) == 1 else series_uid
        files = [header for header in headers if not header.enhanced]
        volumes = [header for header in headers if header.enhanced]
        stacks.extend(_series_stacks(name, series_uid, number, files) if files else [])
        for header in volumes:  # each file its own stacks, named by its file where the series has more
            key = name if len(headers) == 1 else f"{name}/{header.file.name}"
            stacks.extend(_enhanced_stacks(key, series_uid, number, header))
    return sorted(stacks, key=lambda stack: (_number_order(stack.series_number), stack.key))


def is_enhanced_volume(dataset: Any) -> bool:
    """Whether a DICOM dataset (header) is an enhanced multi-frame image with a position for each frame: a CT
    or MR volume in one file, as newer scanners write them (not a segmentation, not a cine loop)."""
    if int(dataset.get("NumberOfFrames", 1) or 1) < 2 or dataset.get("Modality") == "SEG":
        return False
    return frame_value(dataset, 0, "PlanePositionSequence", "ImagePositionPatient") is not None


def _enhanced_stacks(key: str, series_uid: str, number: str, header: _Header) -> list[DicomStack]:
    """The stacks of one enhanced multi-frame file: the whole file, or where it holds several volumes (several
    orientations, or volumes at the same positions), one per volume of its frames (`_volumes_of`), keyed
    `KEY/label`. Frames that nothing tells apart stay one stack, which its reader refuses."""
    dataset = header.dataset
    description, modality = header.get("SeriesDescription").strip(), header.get("Modality") or "other"
    count = int(dataset.NumberOfFrames)

    def attribute(sequence: str, name: str) -> Any:
        return lambda frame: _text_or_none(frame_value(dataset, frame, sequence, name))

    orientations = [
        frame_value(dataset, f, "PlaneOrientationSequence", "ImageOrientationPatient") for f in range(count)
    ]
    positions = [
        frame_value(dataset, f, "PlanePositionSequence", "ImagePositionPatient") for f in range(count)
    ]
    groups = (
        []  # frames without a plane: one stack, which its reader places or refuses
        if any(value is None for value in (*orientations, *positions))
        else _volumes_of(
            list(range(count)), orientations.__getitem__, positions.__getitem__,
            [(name, attribute(sequence, name)) for sequence, name in FRAME_ATTRIBUTES],
        )
    )  # fmt: skip
    if len(groups) < 2:
        plane = _plane_name(np.array(orientations[0], float)) if orientations[0] is not None else "oblique"
        return [DicomStack(key, series_uid, number, description, modality, plane, [header.file], count)]
    return [
        DicomStack(
            f"{key}/{group.label}", series_uid, number, description, modality, group.plane, [header.file],
            len(group.items), tuple(group.items),
        )
        for group in groups
    ]  # fmt: skip


@dataclass
class _Volume:
    """One volume among the images of a series (`_volumes_of`): its `items` (slice headers, or a file's frame
    indices), `label` (its orientation and acquisition where the series holds several, `coronal/EchoNumbers=2`;
    None for the only one), `plane` (axial, coronal, sagittal, oblique) and, where two items lie at one
    position and nothing told them apart, the first two such (`twins`)."""

    items: list[Any]
    label: str | None
    plane: str
    twins: tuple[Any, Any] | None = None


def _volumes_of(
    items: list[Any],
    cosines_of: Any,
    position_of: Any,
    attributes: list[tuple[str, Any]],
) -> list[_Volume]:
    """The volumes among `items` (a series' slice headers, or an enhanced file's frames), as a series is read:
    split by orientation (`cosines_of(item)`: ImageOrientationPatient) first, then, where two items of one
    orientation share a position (`position_of(item)`: ImagePositionPatient, along the normal to 1 um), by the
    first of `attributes` (`(name, value of an item, None where it has none)`) that every item carries and that
    leaves each group one item per position. An orientation that nothing splits stays one volume, with its
    `twins`."""
    by_plane: dict[tuple, list[Any]] = defaultdict(list)
    for item in items:
        by_plane[tuple(np.round(np.array(cosines_of(item), dtype=np.float64), 3))].append(item)
    planes = {plane_key: _plane_name(np.array(plane_key)) for plane_key in by_plane}
    volumes = []
    for plane_key, members in by_plane.items():
        plane = planes[plane_key]
        normal = np.cross(np.array(plane_key[:3]), np.array(plane_key[3:]))
        depths = {
            item: round(float(np.dot(np.array(position_of(item), np.float64), normal)), 3) for item in members
        }
        # the orientation names a volume only where the series has several (a localizer's three planes)
        same = [other_key for other_key, other in planes.items() if other == plane]
        plane_label = (
            None
            if len(by_plane) == 1
            else plane
            if len(same) == 1
            else f"{plane}-{same.index(plane_key) + 1}"
        )
        if _one_per_position(members, depths):
            volumes.append(_Volume(members, plane_label, plane))
        elif (split := _split_by_attribute(members, depths, attributes)) is not None:
            volumes.extend(
                _Volume(group, "/".join(p for p in (plane_label, label) if p), plane)
                for label, group in split
            )
        else:
            at: dict[float, list[Any]] = defaultdict(list)
            for item in members:
                at[depths[item]].append(item)
            twins = next(shared for shared in at.values() if len(shared) > 1)
            volumes.append(_Volume(members, plane_label, plane, (twins[0], twins[1])))
    return volumes


def _one_per_position(group: list[Any], depths: dict[Any, float]) -> bool:
    """Whether no two items of `group` lie at one position (`depths`: each item's along the normal)."""
    return len({depths[item] for item in group}) == len(group)


def _split_by_attribute(
    members: list[Any], depths: dict[Any, float], attributes: list[tuple[str, Any]]
) -> list[tuple[str, list[Any]]] | None:
    """`members` grouped by the first attribute whose groups each hold one item per position, as
    `[("Name=value", group)]` in the values' natural order; None where none does."""
    for name, value_of in attributes:
        values = [value_of(item) for item in members]
        if any(value is None for value in values):
            continue
        groups: dict[str, list[Any]] = defaultdict(list)
        for item, value in zip(members, values, strict=True):
            groups[value].append(item)
        if len(groups) > 1 and all(_one_per_position(group, depths) for group in groups.values()):
            return [(f"{name}={value}", groups[value]) for value in sorted(groups, key=_natural_order)]
    return None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _value_text(value)


def _value_text(value: Any) -> str:
    """An attribute's value as a key's text: `10`, not `10.0`; several values joined by backslashes."""
    if _is_sequence_value(value):
        return "\\".join(_value_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _natural_order(text: str) -> tuple[int, float, str]:
    """Numbers in their order (echo 2 before echo 10), then any other text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def choose_stack(folder: str | Path, series: str | None = None) -> DicomStack:
    """The stack of `folder` (or of an enhanced multi-frame file that holds several volumes) to read: its only
    one, or the one `series` names (a key of the listing, a series number, a series instance UID, or a key's
    part after its series, `EchoNumbers=2`, where one stack has it).

    Raises:
        VolumeReadError: several stacks and no `series`, or a `series` that names none or several of them;
            the message lists the folder's stacks and how to choose.
    """
    stacks = find_stacks(folder)
    folder = Path(folder)
    listed_in = folder if folder.is_dir() else folder.parent  # an enhanced file given itself: its folder
    if series is None:
        if len(stacks) == 1:
            return stacks[0]
        tops = {
            stack.files[0].relative_to(folder).parts[0]
            for stack in stacks
            if folder.is_dir() and stack.files[0].parent != folder
        }
        each = (  # a folder of patients, one series each, is a batch: a glob says so
            f"; or, to segment every sub-folder as an input of its own, quote a glob: msa-hf predict MODEL "
            f"'{folder}/*' OUTPUT_FOLDER"
            if len(tops) == len(stacks)
            else ""
        )
        own_folders = " or give each series a folder of its own" if folder.is_dir() else ""
        raise SeveralStacks(
            stacks,
            f"{folder}: holds {len(stacks)} DICOM image stacks; name the one to read (--series KEY of msa-hf predict "
            f"or prepare, series=KEY in Python){own_folders}{each}:\n{_listing(stacks, listed_in)}",
        )
    series = str(series).strip()
    chosen = (
        [stack for stack in stacks if stack.key == series]
        or [stack for stack in stacks if series in (stack.series_uid, stack.series_number)]
        # the part after the series: one choice for every case of a dataset, whose series numbers differ
        or [stack for stack in stacks if stack.key.partition("/")[2] == series]
    )
    if len(chosen) == 1:
        return chosen[0]
    what = "names several of them" if chosen else "names none of them"
    listed = chosen or stacks
    raise VolumeReadError(
        f"{folder}: series {series!r} {what}; choose one by its key with --series KEY (series=KEY in Python):"
        f"\n{_listing(listed, listed_in)}"
    )


@dataclass(frozen=True)
class EnhancedGrid:
    """The chosen stack of an enhanced multi-frame file as its frames lie (`read_stack`): the `file`, its
    `dataset` (the header, or with pixels), the stack's `frames` (`DicomStack.frame_indices`; None: every
    frame), those frames in position `order` and the RAS `affine` of their grid (`volumes.enhanced_frame_grid`)."""

    file: Path
    dataset: Any
    frames: tuple[int, ...] | None
    order: list[int]
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(columns, rows, frames)`: the voxel grid `(i, j, k)` the affine maps."""
        return int(self.dataset.Columns), int(self.dataset.Rows), len(self.order)


@dataclass(frozen=True)
class StackImages:
    """The chosen stack of a DICOM folder or enhanced multi-frame file, read once (`read_stack`): its
    `stack`, the RAS `affine` of its voxel grid (i = column, j = row, k = position order) and that grid's
    `shape` `(columns, rows, slices)`, and either a series' `slices` (`[(file, dataset)]` in position order)
    or an enhanced file's `enhanced` grid."""

    stack: DicomStack
    affine: np.ndarray
    shape: tuple[int, int, int]
    slices: list[tuple[Path, Any]] | None = None
    enhanced: EnhancedGrid | None = None

    @property
    def header(self) -> Any:
        """A dataset of the stack, to copy its series, study and patient from."""
        return self.enhanced.dataset if self.enhanced is not None else self.slices[0][1]


def read_stack(path: str | Path, series: str | None = None, pixels: bool = False) -> StackImages:
    """The stack of the DICOM folder `path`, or of the enhanced multi-frame file `path` is, that `series`
    chooses (`choose_stack`, asked once), read as its images lie: a series' slice files in position order
    (`volumes.stack_slices`), or an enhanced file's header (`pixels`: with its pixel data, as a DICOM-SEG's
    source needs) with its chosen frames in position order (`volumes.enhanced_frame_grid`).

    Raises:
        VolumeReadError: as `choose_stack`, `stack_slices` and `enhanced_frame_grid`.
    """
    import pydicom

    from msa_hf.data.volumes import enhanced_frame_grid, stack_slices

    stack = choose_stack(path, series)
    if not stack.multi_frame:
        found, affine = stack_slices(stack, path)
        first = found[0][1]
        return StackImages(stack, affine, (int(first.Columns), int(first.Rows), len(found)), slices=found)
    file = stack.files[0]
    dataset = pydicom.dcmread(file, stop_before_pixels=not pixels)
    order, affine = enhanced_frame_grid(dataset, file, stack.frame_indices)
    grid = EnhancedGrid(file, dataset, stack.frame_indices, order, affine)
    return StackImages(stack, affine, grid.shape, enhanced=grid)


def _series_stacks(name: str, series_uid: str, number: str, headers: list[_Header]) -> list[DicomStack]:
    """One series' stacks: split by orientation, then by acquisition where images share a position
    (`_volumes_of`, with `ACQUISITION_ATTRIBUTES`; an image without one reads as an empty value).

    Raises:
        VolumeReadError: two images at one position that none of the attributes tells apart.
    """
    first = headers[0]
    description, modality = first.get("SeriesDescription").strip(), first.get("Modality") or "other"
    volumes = _volumes_of(
        headers,
        lambda header: header.dataset.ImageOrientationPatient,
        lambda header: header.dataset.ImagePositionPatient,
        [(attribute, lambda header, a=attribute: header.get(a)) for attribute in ACQUISITION_ATTRIBUTES],
    )
    stacks = []
    for volume in volumes:
        if volume.twins is not None:
            raise VolumeReadError(
                f"{volume.twins[0].file} and {volume.twins[1].file}: two images of one series at one position, and "
                f"none of {', '.join(ACQUISITION_ATTRIBUTES)} tells them apart, so they cannot be stacked into one "
                "volume. Put each acquisition's files in a folder of its own."
            )
        key = name if volume.label is None else f"{name}/{volume.label}"
        files = [header.file for header in volume.items]
        stacks.append(DicomStack(key, series_uid, number, description, modality, volume.plane, files))
    return stacks


def _plane_name(cosines: np.ndarray) -> str:
    """axial / coronal / sagittal for a slice normal within ~25 degrees of an axis, else oblique."""
    normal = np.cross(cosines[:3], cosines[3:])
    axis = int(np.argmax(np.abs(normal)))
    return PLANE_NAMES[axis] if abs(normal[axis]) > 0.9 else "oblique"


def _listing(stacks: list[DicomStack], folder: Path) -> str:
    """The stacks one per line, each with the sub-folder its files are in where that is not `folder`."""
    lines = []
    for stack in stacks:
        where = Path(os.path.commonpath([file.parent for file in stack.files])).relative_to(folder)
        lines.append(f"  {stack.describe()}" + (f" (in {where})" if where.parts else ""))
    return "\n".join(lines)


def _number_order(number: str) -> tuple[int, str]:
    return (int(number), "") if number.strip().lstrip("-").isdigit() else (1 << 30, number)


def _is_sequence_value(value: Any) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, MultiValue | list | tuple)
