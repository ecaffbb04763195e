# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Scoring mask files against reference label maps (`msa-hf score`): any tool's masks, or `msa-hf predict`'s.

Predictions (a folder, a quoted glob or one file) pair with the label maps of a folder by name, the rule of
`msa-hf prepare` (`data.sources.LabelIndex`: `case_0000.nii.gz` -> `case.nii.gz`, `img0001` -> `label0001`), or
without a prediction suffix (`case_pred.nii.gz`); or a manifest (CSV or JSON) names each pair where names do
not tell (`manifest_pairs`). Each pair is read as `prepare` reads a label map: NIfTI in
RAS+ orientation (so a mask written in another axis order still lines up) and checked to lie on the
reference's grid; a DICOM-SEG onto the series it was drawn on (`SegmentValues`); 2-D masks (PNG/TIFF/BMP) as
label images of the reference's size. Every label value is a structure, or every region of a region-based
table (`data.tasks.structure_mask`), named by the label table beside the labels (`dataset.json`,
`labels.json`, ...) and scored per case as `msa-hf evaluate` scores (`case_scores`): Dice, IoU, HD95 and NSD,
in mm for volumes and in pixels for 2-D masks, with the predicted and reference size; a structure absent from
both is counted apart.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from msa_hf.evaluation.case_scores import NSD_TOLERANCE_MM, CaseScore, case_score, picture_case_score

if TYPE_CHECKING:
    from msa_hf.data.tasks import Regions

SCORE_FILES = ("scores.csv", "scores.md")  # what `write_scores` writes into its folder
# what a mask file may be, as the messages say it
MASK_FORMATS = (
    "NIfTI (.nii, .nii.gz), DICOM-SEG, RT structure sets or lossless images (.png, .tif, .bmp), or a folder per "
    "case of one mask per structure"
)


@dataclass
class MaskPair:
    """A predicted mask, the reference label map it pairs with, and the case id they share."""

    case_id: str
    prediction: Path
    label: Path


@dataclass
class MaskArrays:
    """One pair read: `(Z, H, W)` slice stacks of a volume (`spacing` its `(row, col, slice)` mm) or `(H, W)`
    masks of a 2-D picture (`spacing` None), as integer label maps; a DICOM object whose structures overlap
    as the bits of each pixel's code, with each drawn structure's codes (`prediction_codes`, `label_codes`:
    `dicom_seg_labels.load_dicom_structures`)."""

    prediction: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float] | None
    prediction_codes: dict[int, tuple[int, ...]] | None = None
    label_codes: dict[int, tuple[int, ...]] | None = None
    voxel_ml: float | None = None  # a volume's voxel in mL (`volumes.voxel_ml` of its grid)
    # the stacks' (Z, H, W) axes in world coordinates (`planes.display_axes`): surface distances on a
    # gantry-tilted grid are measured with them
    axes: np.ndarray | None = None

    def structures_present(self) -> set[int]:
        """The label values (structures) either mask holds, 0 aside."""
        present = set()
        for array, codes in ((self.prediction, self.prediction_codes), (self.label, self.label_codes)):
            present |= set(codes) if codes is not None else set(np.unique(array).tolist()) - {0}
        return present

    def structure_masks(self, value: int, regions: Regions | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Structure `value`'s predicted and reference masks (`tasks.structure_mask`, through `regions` of a
        region-based label table; a bit-coded side through its own codes, empty where it draws none)."""
        from msa_hf.data.tasks import structure_mask

        def mask(array: np.ndarray, codes: dict[int, tuple[int, ...]] | None) -> np.ndarray:
            if codes is None:
                return structure_mask(array, value, regions)
            return np.isin(array, codes.get(value, ()))

        return mask(self.prediction, self.prediction_codes), mask(self.label, self.label_codes)


def _is_mask_source(path: Path) -> bool:
    """A mask file, or a case's folder of one mask per structure (`data.structure_files`): what a prediction
    or a reference may be."""
    from msa_hf.data.structure_files import is_structure_folder

    return is_structure_folder(path) if path.is_dir() else _is_mask_file(path)


def _is_mask_file(path: Path) -> bool:
    from msa_hf.data.dicom_seg_labels import is_dicom_label_file
    from msa_hf.data.image_files import is_image_file
    from msa_hf.data.volumes import is_volume_file
    from msa_hf.inference.batch import is_probabilities_file

    if is_probabilities_file(path):
        return False
    return is_volume_file(path) or is_image_file(path) or is_dicom_label_file(path)


def find_mask_files(predictions: str | Path) -> list[Path]:
    """The masks `predictions` names: a folder's NIfTI and image files (not `msa-hf predict`'s summary or
    probability files) and its sub-folders of one mask per structure (`msa-hf predict --structure-files`,
    TotalSegmentator), each one case, a quoted glob's matches, or one file.

    Raises:
        ValueError: nothing found, or a file that is not a NIfTI or image mask.
    """
    from msa_hf.data.sources import visible_files
    from msa_hf.inference.batch import is_glob

    source = str(predictions)
    path = Path(source)
    if path.is_dir():
        from msa_hf.data.sources import label_folders

        found = sorted([p for p in visible_files(path) if _is_mask_file(p)] + label_folders(path))
    elif path.is_file():
        found = [path]
    elif is_glob(source):
        found = sorted(p for p in map(Path, glob.glob(source)) if _is_mask_source(p))
    else:
        raise ValueError(f"predictions {source}: no such file or folder.")
    if not found:
        raise ValueError(f"predictions {source}: no masks found; masks are {MASK_FORMATS}.")
    for file in found:
        if not _is_mask_source(file):
            raise ValueError(f"prediction {file}: not a mask file; masks are {MASK_FORMATS}.")
    return found


def pair_mask_files(predictions: list[Path], labels: str | Path) -> list[MaskPair]:
    """Each prediction with its label map in the folder `labels` (or the one label map `labels` is, for one
    prediction), by `LabelIndex`.

    Raises:
        ValueError: a prediction without a label map, two predictions of one label map, or no such folder.
    """
    from msa_hf.data.sources import PAIRING_RULE, LabelIndex, file_stem, listed_names

    labels = Path(labels)
    if labels.is_file():
        if len(predictions) != 1:
            raise ValueError(
                f"labels {labels}: one label map for {len(predictions)} predictions; give the folder of label maps."
            )
        return [MaskPair(file_stem(labels), predictions[0], labels)]
    if not labels.is_dir():
        raise ValueError(f"labels {labels}: no such file or folder.")
    index = LabelIndex.in_folder(labels)
    pairs, unpaired, owner = [], [], {}
    for prediction in predictions:
        label, case_id = index.find_for_mask(prediction)
        if label is None:
            unpaired.append(prediction)
            continue
        if label in owner:
            raise ValueError(
                f"predictions {owner[label]} and {prediction} both pair with the label map {label}; score one "
                "of them (give the predictions as a glob)."
            )
        owner[label] = prediction
        pairs.append(MaskPair(case_id, prediction, label))
    if unpaired:
        raise ValueError(
            f"labels {labels}: no label map for {len(unpaired)} of {len(predictions)} predictions "
            f"({listed_names(unpaired)}). "
            f"{PAIRING_RULE} A prediction may also end in _pred or _prediction (case_pred.nii.gz -> case.nii.gz). "
            "Give the predictions to score as a glob, or move the others out of the folder."
        )
    return pairs


MANIFEST_COLUMNS = ("prediction", "label", "case_id")  # a score manifest's columns; case_id is optional


def is_score_manifest(predictions: str | Path) -> bool:
    """Whether `predictions` names a manifest of pairs (a .csv or .json file) rather than masks."""
    return Path(predictions).suffix.lower() in (".csv", ".json")


def manifest_pairs(manifest: str | Path) -> list[MaskPair]:
    """The pairs a manifest names: a CSV with the columns `prediction` and `label` (and `case_id`, default the
    prediction's name without its suffix), or a JSON list of such objects; paths relative to the manifest's
    folder. For masks whose names do not pair by `prepare`'s rule (another tool's outputs, a second
    annotator's files).

    Raises:
        ValueError: an unreadable manifest, a row without both paths or with other columns, a path that is
            not a mask file, or two rows of one case.
    """
    from msa_hf.data.sources import file_stem, read_manifest

    manifest = Path(manifest)
    if not manifest.is_file():
        raise ValueError(f"manifest {manifest}: no such file.")
    example = '{"prediction": "masks/a.nii.gz", "label": "reference/patient_a.nii.gz"}'
    rows = read_manifest(
        manifest,
        f"rows with the columns prediction and label (CSV), or a JSON list of objects like {example}",
    )
    pairs, seen = [], {}
    for index, row in enumerate(rows):
        unknown = sorted(set(row) - set(MANIFEST_COLUMNS))
        missing = [name for name in ("prediction", "label") if not str(row.get(name) or "").strip()]
        if unknown or missing:
            problem = f"has unknown columns {unknown}" if unknown else f"names no {' and no '.join(missing)}"
            raise ValueError(
                f"manifest {manifest}: row {index + 1} {problem}; the columns are prediction and label (paths "
                f"from the manifest's folder), and optionally case_id: {example}."
            )
        paths = {name: manifest.parent / str(row[name]).strip() for name in ("prediction", "label")}
        for name, path in paths.items():
            if not path.exists() or not _is_mask_source(path):
                what = "no such file" if not path.exists() else "not a mask file"
                raise ValueError(
                    f"manifest {manifest}: row {index + 1}'s {name} {path}: {what}; masks are {MASK_FORMATS}."
                )
        case_id = str(row.get("case_id") or "").strip() or file_stem(paths["prediction"])
        if case_id in seen:
            raise ValueError(
                f"manifest {manifest}: rows {seen[case_id]} and {index + 1} are both case {case_id!r}; give each "
                "pair a case_id of its own."
            )
        seen[case_id] = index + 1
        pairs.append(MaskPair(case_id, paths["prediction"], paths["label"]))
    return pairs


def labels_folder(pairs: list[MaskPair]) -> Path:
    """The folder holding the label maps of `pairs` (the deepest one they share), where their label table is
    looked for."""
    import os

    return Path(os.path.commonpath([pair.label.parent.resolve() for pair in pairs]))


class SegmentValues:
    """Where masks of named segments are scored (DICOM-SEG, RT structure sets, 3D Slicer segmentations): the
    DICOM series the DICOM objects were drawn on (found under `images`, indexed once by series UID; a Slicer
    file lies on its own grid) and the label value of each segment label, so that a SEG's segments and a
    NIfTI's values (or another file's segments, numbered its own way) name the same structures.

    A segment label takes its value from the label table by name (or by the concept the name denotes:
    `structure_codes.values_by_concept`); msa-hf predict's unnamed segments
    ("structure 3") the value in their name; with no table and only such files, the numbers the files agree
    on, else one value per label alphabetically (`data.dicom_seg_labels.segment_label_values`)."""

    def __init__(
        self, images: str | Path | None, files: list[Path], table: dict[int, str], only_seg: bool
    ) -> None:
        from msa_hf.data.dicom_seg_labels import segment_label_values, segment_names
        from msa_hf.data.dicom_stacks import find_stacks
        from msa_hf.data.structure_codes import values_by_concept

        self.images = Path(images) if images is not None else None
        self.stacks: dict[str, list] = {}
        for stack in find_stacks(self.images) if self.images is not None else ():
            self.stacks.setdefault(stack.series_uid, []).append(stack)
        if not table and only_seg:
            self.values, _ = segment_label_values(files, None)
            self.names = {value: name for name, value in self.values.items()}
            return
        labels = {name for file in files for name in segment_names(file).values()}
        # a structure named otherwise than the table names it (Kidney_L, left kidney) is that structure
        by_name = values_by_concept({name: value for value, name in table.items()}, sorted(labels))
        self.values, unknown = {}, []
        for name in sorted(labels):
            number = name.removeprefix("structure ")
            if name in by_name:
                self.values[name] = by_name[name]
            elif number.isdigit() and name != number:
                self.values[name] = int(number)
            else:
                unknown.append(name)
        if unknown:
            where = "the label table" if table else "no label table (none beside the labels)"
            raise ValueError(
                f"segments (DICOM-SEG, 3D Slicer) or RT structure set ROIs {unknown} have no label value in {where}; "
                "they are "
                "scored against label values through a label table that names them (--label-table labels.json, "
                '{"1": "liver"}).'
            )
        self.names = dict(table)

    def read(self, seg: Path) -> tuple[Any, dict[int, tuple[int, ...]] | None]:
        """The structures `seg` draws (a DICOM object's on its series under `images`): a RAS+ label volume and
        None, or where they overlap, its codes and each structure's codes (`load_label_structures`)."""
        import os

        from msa_hf.data.dicom_seg_labels import (
            drawn_on,
            is_dicom_label_file,
            load_dicom_structures,
            load_label_structures,
            referenced_series,
        )

        if not is_dicom_label_file(seg):  # a 3D Slicer segmentation: its own grid
            return load_label_structures(seg, seg, self.values)
        if self.images is None:
            raise ValueError(_needs_images(seg))
        uid = referenced_series(seg)
        stacks = self.stacks.get(uid or "", [])
        if not stacks:
            raise ValueError(
                f"{seg}: drawn on series {uid}, which is not among the series under --images "
                f"{self.images}; give the folder that holds the series each DICOM-SEG or RT structure set was drawn on."
            )
        stack = drawn_on(seg, stacks, f"--images {self.images}")  # a series of several volumes: its own
        files = stack.files
        location = Path(os.path.commonpath(files)) if len(files) > 1 else files[0]
        if location.is_file() and not stack.multi_frame:
            location = location.parent
        series = None if location.is_file() else uid
        if len(stacks) > 1:  # its key where it is read from (keys name stacks within one listing)
            from msa_hf.data.dicom_stacks import find_stacks

            (series,) = [
                there.key
                for there in find_stacks(location)
                if there.files == stack.files and there.frame_indices == stack.frame_indices
            ]
        return load_dicom_structures(seg, location, self.values, series=series)


def _needs_images(path: Path) -> str:
    """What a message says of a DICOM label object to read without the series it was drawn on."""
    return (
        f"{path}: a DICOM label object is read onto the DICOM series it was drawn on; give the folder holding "
        "that series with --images (images= in Python)."
    )


def read_mask_pair(
    pair: MaskPair,
    segments: SegmentValues | None = None,
    label_remap: dict[int, int] | None = None,
    names: dict[int, str] | None = None,
) -> MaskArrays:
    """Both masks of `pair` as label maps on one grid (see the module docstring); DICOM-SEG masks read onto
    their series through `segments`; the reference's values read through `label_remap` (as `prepare
    --remap-labels` reads them); a prediction that is a folder of one mask per structure valued through the
    label table `names` (`{value: name}`; `structure_files.read_structure_folder`).

    Raises:
        ValueError: a volume paired with a 2-D mask, masks on different grids (shape, or a voxel-to-world
            affine more than 0.01 mm apart), a DICOM-SEG without `segments`, or a file that is not a valid
            label map (`VolumeReadError`, `ImageReadError`).
    """
    from msa_hf.data.dicom_seg_labels import is_dicom_label_file, is_named_label_file
    from msa_hf.data.image_files import read_mask
    from msa_hf.data.label_tables import remap_label_values, remap_structure_codes
    from msa_hf.data.planes import display_axes
    from msa_hf.data.structure_files import PICTURE_SUFFIX, read_structure_folder, structure_files
    from msa_hf.data.volumes import (
        affines_match,
        axial_slices,
        is_volume_file,
        load_volume,
        placed_on_grid,
        voxel_ml,
    )

    def volume_file(path: Path) -> bool:
        if path.is_dir():  # a folder of structure files: volume files, or PNG
            return not structure_files(path)[0].name.lower().endswith(PICTURE_SUFFIX)
        return is_volume_file(path) or is_dicom_label_file(path)

    if volume_file(pair.prediction) != volume_file(pair.label):
        raise ValueError(
            f"prediction {pair.prediction} and label map {pair.label}: one is a volume (NIfTI, NRRD, MetaImage, "
            "DICOM-SEG, RT structure set), the other a 2-D mask; score volumes against volumes and images against images."
        )
    if not volume_file(pair.label):
        prediction, prediction_codes = (
            read_structure_folder(pair.prediction, names or {})
            if pair.prediction.is_dir()
            else (read_mask(pair.prediction), None)
        )
        if pair.label.is_dir():
            label, label_codes = read_structure_folder(pair.label, names or {})
            label_codes = remap_structure_codes(label_codes, label_remap or {})
        else:
            label, label_codes = read_mask(pair.label, remap=label_remap), None
        if prediction.shape != label.shape:
            raise ValueError(
                f"prediction {pair.prediction} is {prediction.shape[1]} x {prediction.shape[0]} pixels, its label "
                f"map {pair.label} {label.shape[1]} x {label.shape[0]}; a mask is scored at its image's size."
            )
        return MaskArrays(prediction, label, None, prediction_codes, label_codes)

    def read(path: Path) -> tuple[Any, dict[int, tuple[int, ...]] | None]:
        if path.is_dir():
            return read_structure_folder(path, names or {})
        if segments is not None and is_named_label_file(path):  # none under a region-based table
            return segments.read(path)
        if is_volume_file(path):
            return load_volume(path, is_label=True), None
        raise ValueError(_needs_images(path))

    (prediction, prediction_codes), (label, label_codes) = read(pair.prediction), read(pair.label)
    if prediction.array.shape != label.array.shape:  # one cropped to its structures (3D Slicer's): placed
        label = placed_on_grid(label, prediction.array.shape, prediction.affine) or label
    if prediction.array.shape != label.array.shape:
        prediction = placed_on_grid(prediction, label.array.shape, label.affine) or prediction
    if label_codes is None:
        label.array = remap_label_values(label.array, label_remap or {})
    else:
        label_codes = remap_structure_codes(label_codes, label_remap or {})
    if prediction.array.shape != label.array.shape or not affines_match(prediction.affine, label.affine):
        raise ValueError(
            f"prediction {pair.prediction} lies on another voxel grid than its label map {pair.label} (RAS+ "
            f"shape {prediction.array.shape} vs {label.array.shape}, voxel-to-world affine "
            f"{np.round(prediction.affine[:3], 2).tolist()} vs {np.round(label.affine[:3], 2).tolist()}). Predict on "
            "the image the label map was drawn on, or resample the prediction onto the label map's grid (nearest "
            "neighbour) first."
        )
    return MaskArrays(
        axial_slices(prediction.array),
        axial_slices(label.array),
        label.slice_spacing,
        prediction_codes,
        label_codes,
        voxel_ml(label.affine),
        display_axes(label.affine, "axial"),
    )


def score_mask_files(
    predictions: str | Path,
    labels: str | Path | None,
    classes: str | list[str] | None = None,
    label_table: str | Path | None = None,
    tolerance: float = NSD_TOLERANCE_MM,
    images: str | Path | None = None,
    label_remap: dict[int, int] | None = None,
) -> tuple[list[CaseScore], str]:
    """Score every prediction against its label map (see the module docstring), one pair in memory at a time.

    Args:
        predictions: a folder of masks, a glob (`"out/*.nii.gz"`) or one mask file; or a manifest of pairs
            (`manifest_pairs`), whose label maps' folder is then where the label table is looked for. A case may
            be a folder of one mask per structure (`data.structure_files`): in a folder of cases, or alone
            with one label map.
        labels: the folder of reference label maps (or one label map, for one prediction); None with a
            manifest.
        classes: structures to score, by name or value (as `msa-hf evaluate --classes`); default every value
            found in the labels or the predictions.
        label_table: the names of the label values (default: the table beside the labels, if any).
        tolerance: NSD's tolerance, in mm for volumes and pixels for 2-D masks.
        images: the folder holding the DICOM series that DICOM-SEG masks were drawn on (a study, a PACS
            export, a folder of series folders); needed where a prediction or a label map is a DICOM-SEG,
            except with `labels` a DICOM download of one folder per patient, which holds them (the default
            there).
        label_remap: `{value in the label maps: value to read}` for references coded unusually (REFUGE's
            255 background), as `prepare --remap-labels` reads them; the predictions are read as written.

    Returns:
        One `CaseScore` per (case, structure), cases in pairing order and structures by value (a structure
        absent from both masks of a case has no Dice, counted apart), and the distance unit ("mm" or
        "pixels").

    Raises:
        ValueError: as `find_mask_files`, `pair_mask_files`, `manifest_pairs` and `read_mask_pair`; labels
            beside a manifest, or neither; a mix of volumes and 2-D
            masks; a structure of `classes` that is neither in the label table nor a value.
    """
    from msa_hf.data.dicom_seg_labels import is_dicom_label_file, is_named_label_file
    from msa_hf.data.label_tables import check_label_remap, default_class_names, label_folder_structures
    from msa_hf.data.sources import file_stem
    from msa_hf.data.structure_files import is_structure_folder, structure_label_values
    from msa_hf.data.tasks import select_class_names, structures_present

    label_remap = check_label_remap(label_remap or {})
    if is_score_manifest(predictions):
        if labels is not None:
            raise ValueError(
                f"predictions {predictions}: a manifest names each prediction's label map; leave the labels "
                f"({labels}) out."
            )
        pairs = manifest_pairs(predictions)
        labels = labels_folder(pairs)
    elif labels is None:
        raise ValueError(
            f"predictions {predictions}: give the label maps to score them against (a folder, or one file), or a "
            "manifest of pairs (a CSV with the columns prediction and label)."
        )
    elif Path(labels).is_file() and is_structure_folder(predictions):  # one case's structures, one label map
        pairs = [MaskPair(file_stem(Path(labels)), Path(predictions), Path(labels))]
    else:
        pairs = pair_mask_files(find_mask_files(predictions), labels)
    table, regions = label_folder_structures(labels, label_table)
    folders = [p for pair in pairs for p in (pair.prediction, pair.label) if p.is_dir()]
    if not table and folders and len(folders) == 2 * len(pairs):
        # structure files on both sides and no table: the file names name the structures, alike in every case
        table, _ = structure_label_values(folders, None)
    # label objects of named segments (DICOM's, 3D Slicer's), each file numbering them its own way
    seg_files = [
        p for pair in pairs for p in (pair.prediction, pair.label) if is_named_label_file(p, bool(regions))
    ]
    segments = None
    if seg_files:
        if images is None and any(
            is_dicom_label_file(pair.label) and pair.label.parent != Path(labels) for pair in pairs
        ):  # a DICOM download of patient folders (`LabelIndex.in_folder`): its series lie beside their labels
            images = labels
        dicom_files = [p for p in seg_files if is_dicom_label_file(p)]
        if images is None and dicom_files:
            raise ValueError(_needs_images(dicom_files[0]))
        if regions:
            raise ValueError(
                f"{seg_files[0]}: DICOM-SEG, RT structure set or 3D Slicer masks with a region-based label table; a "
                "segment or ROI is one structure, so give a table of one value per name (--label-table)."
            )
        segments = SegmentValues(images, seg_files, table, only_seg=len(seg_files) == 2 * len(pairs))
        table = table or segments.names
    wanted = None
    if classes:  # resolved before any mask is read: a misspelt name fails at once
        tokens = [t.strip() for t in (classes.split(",") if isinstance(classes, str) else classes)]
        if not table and not all(t.isdigit() for t in tokens):
            raise ValueError(
                f"classes {', '.join(tokens)}: no label table names the structures of {labels} (dataset.json, "
                "labels.json, labels.txt, ... there or in the folder above); give label values, or --label-table."
            )
        values = {int(t) for t in tokens if t.isdigit()}
        wanted = select_class_names(default_class_names(sorted(values)) | table, tokens)
    scored: list[tuple[str, dict[int, CaseScore]]] = []  # per pair: its case id, its scores by value
    kinds = set()
    for pair in pairs:
        arrays = read_mask_pair(pair, segments, label_remap, table)
        kinds.add(arrays.spacing is None)
        if len(kinds) > 1:
            raise ValueError(
                f"predictions {predictions}: volumes and 2-D masks together ({pair.prediction}); score each kind "
                "on its own."
            )
        present = arrays.structures_present()
        scored.append((pair.case_id, {}))
        candidates = set(wanted or table) if regions else (present if wanted is None else set(wanted))
        for value in structures_present(present, candidates, regions):
            prediction, label = arrays.structure_masks(value, regions)
            name = table.get(value, f"class_{value}")
            score = (
                picture_case_score(pair.case_id, name, [prediction], [label], tolerance=tolerance)
                if arrays.spacing is None
                else case_score(
                    pair.case_id,
                    name,
                    prediction,
                    label,
                    arrays.spacing,
                    tolerance=tolerance,
                    axes=arrays.axes,
                )
            )
            # a volume's size in mL; a 2-D mask's in pixels
            unit = arrays.voxel_ml or 1.0
            score.sizes = (float(prediction.sum()) * unit, float(label.sum()) * unit)
            scored[-1][1][value] = score
    every = wanted or (
        dict(table) if regions else {v: table.get(v, f"class_{v}") for _, case in scored for v in case}
    )
    scores = [
        case.get(value)
        or CaseScore(case_id, every[value], None, None, None, None, sizes=(0.0, 0.0))  # in neither
        for case_id, case in scored
        for value in sorted(every)
    ]
    return scores, "pixels" if True in kinds else "mm"


def score_table(scores: list[CaseScore], distance_unit: str, tolerance: float = NSD_TOLERANCE_MM) -> str:
    """A Markdown table of `scores` per structure (the order they appear in) and their mean: cases scored,
    Dice (mean ± standard deviation over the cases, as clinical papers report it), IoU, HD95 (over the cases
    where it is finite; how many are not is said) and NSD, and the cases where the structure is in neither
    mask, which no mean counts."""
    from msa_hf.evaluation.metrics import summarise

    unit = "px" if distance_unit == "pixels" else "mm"
    lines = [
        f"| structure | cases | Dice | IoU | HD95 ({unit}) | NSD ({tolerance:g} {unit}) | in neither mask |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    means = []
    for name in dict.fromkeys(s.class_name for s in scores):
        rows = [s for s in scores if s.class_name == name]
        dice, iou, nsd = (summarise(getattr(s, metric) for s in rows) for metric in ("dice", "iou", "nsd"))
        dices = [s.dice for s in rows if s.dice is not None]
        spread = f" ± {np.std(dices):.3f}" if len(dices) > 1 else ""
        distances = [s.hd95 for s in rows if s.hd95 is not None]
        finite = [d for d in distances if np.isfinite(d)]
        hd95 = f"{np.mean(finite):.2f}" if finite else "–"
        if len(finite) < len(distances):  # one mask empty: no distance to the other
            hd95 += f" ({len(distances) - len(finite)} inf)"
        means.append((dice.mean, iou.mean, nsd.mean))
        lines.append(
            f"| {name} | {dice.count} | {dice.mean:.3f}{spread} | {iou.mean:.3f} | {hd95} | {nsd.mean:.3f} | "
            f"{dice.empty_on_empty} |"
        )
    if len(means) > 1:
        dice, iou, nsd = np.nanmean(np.array(means), axis=0)
        lines.append(f"| **mean** | | **{dice:.3f}** | **{iou:.3f}** | | **{nsd:.3f}** | |")
    return "\n".join(lines)


def write_scores(
    output_dir: str | Path,
    scores: list[CaseScore],
    distance_unit: str,
    description: str,
    inputs: list[str | Path] = (),
    tolerance: float = NSD_TOLERANCE_MM,
) -> None:
    """`scores.csv` (one row per case and structure, `results_files.write_case_csv`) and `scores.md` (the
    `score_table`, titled with `description`) in `output_dir`, each written whole; a folder inside one of
    `inputs` is refused."""
    from msa_hf.evaluation.results_files import write_case_csv
    from msa_hf.output_files import atomic_file

    output_dir = Path(output_dir)
    write_case_csv(scores, output_dir / SCORE_FILES[0], inputs, distance_unit)
    with atomic_file(output_dir / SCORE_FILES[1], inputs) as staging:
        staging.write_text(f"{description}\n\n{score_table(scores, distance_unit, tolerance)}\n")
