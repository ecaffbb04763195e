# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Reading 3-D scans: NIfTI (nibabel), NRRD and MetaImage (SimpleITK, `itk_files`) and DICOM series (pydicom),
in one canonical orientation.

Every volume is reoriented to RAS+ (`nibabel.as_closest_canonical`), so axis 2 is inferior -> superior
and axial slices are `array[:, :, k]`. Slices handed to the model are in the display convention
`(rows, cols)` = (anterior -> posterior, patient left -> right) — "neurological" view — and
`axial_slices` / `volume_from_axial_slices` convert both ways exactly, so predictions can be written
back to NIfTI on the image's own affine. Spacing is kept in millimetres for HD95.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.data.image_files import DICOM_DECODERS_HINT, MULTI_FRAME_ADVICE
from msa_hf.data.itk_files import ITK_OUTPUT_SUFFIXES, ITK_SUFFIXES, ItkReadError, is_itk_file
from msa_hf.data.label_tables import MAX_LABEL_VALUE
from msa_hf.data.planes import display_slices, volume_from_display_slices
from msa_hf.data.size_limits import InputTooLargeError, check_nifti_size, check_voxel_count
from msa_hf.data.transforms import check_finite

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VOLUME_FILE_SUFFIXES = (*NIFTI_SUFFIXES, *ITK_SUFFIXES)  # a volume in one file (or a header and its data)
# a volume in one file: what a volume's mask is written as, and what a demo visitor can upload
ONE_FILE_VOLUME_SUFFIXES = (*NIFTI_SUFFIXES, *ITK_OUTPUT_SUFFIXES)
VOLUME_FILE_NAMES = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd)"


class VolumeReadError(ValueError):
    """A scan that cannot be used; the message names the file and says how to fix it."""


@dataclass
class Volume:
    """A scan in RAS+ orientation.

    Attributes:
        array: `(X, Y, Z)` voxels (float32 image intensities, or integer labels).
        affine: `(4, 4)` voxel -> world (RAS, mm).
        spacing: `(x, y, z)` voxel size in mm.
        source: the file or folder it came from (for messages).
        modality: "CT", "MR" or "other" (DICOM's tag when known).
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    source: str
    modality: str = "other"

    @property
    def slice_spacing(self) -> tuple[float, float, float]:
        """`(row, col, slice)` spacing in mm of the slices `axial_slices` returns."""
        x, y, z = self.spacing
        return (y, x, z)


def voxel_ml(affine: np.ndarray) -> float:
    """One voxel's volume in mL on the grid of a voxel-to-world `affine` `(4, 4)` in mm: a structure's voxel
    count times this is its volume, what a volumetry report reads. The affine's determinant, not the product
    of its axes' spacings, which overstates it where slices step off their normal (a CT series acquired with
    the gantry tilted: by 1 / cos(tilt), 6% at 20 degrees)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


TILT_TOLERANCE_DEGREES = 0.01  # below this, a grid's axes are taken as orthogonal (rounding in the headers)


def tilt_note(affine: np.ndarray, source: str | Path) -> str | None:
    """What to know of a volume whose slices step off their normal (`tilt_degrees` of its `affine`), or None."""
    tilt = tilt_degrees(affine)
    if tilt <= TILT_TOLERANCE_DEGREES:
        return None
    return (
        f"{source}: its slices step {tilt:.1f} degrees off their normal (a CT acquired with the gantry tilted): "
        "they are segmented as acquired, and volumes in mL are those of the tilted voxels. A NIfTI mask of a "
        "DICOM series holds the tilt in its sform alone (no qform can), which tools that keep images on "
        "orthogonal grids straighten or refuse; a DICOM-SEG or RT structure set (a .dcm output) lies on the "
        "images themselves."
    )


def tilt_degrees(affine: np.ndarray) -> float:
    """How far a voxel grid's slices step off their normal, in degrees: the largest angle between one axis of
    a voxel-to-world `affine` `(4, 4)` and the normal of the plane of the other two; 0 for a grid whose axes
    are orthogonal (a CT series acquired with the gantry tilted is not)."""
    axes = np.asarray(affine, dtype=np.float64)[:3, :3].T  # one row per voxel axis
    angles = []
    for index in range(3):
        normal = np.cross(axes[(index + 1) % 3], axes[(index + 2) % 3])
        cosine = abs(axes[index] @ normal) / (np.linalg.norm(axes[index]) * np.linalg.norm(normal))
        angles.append(float(np.degrees(np.arccos(min(cosine, 1.0)))))
    return max(angles)


def import_highdicom(purpose: str) -> Any:
    """highdicom (the `dicom` extra), or an error saying what needs it and how to install it."""
    try:
        import highdicom
    except ImportError as error:
        raise VolumeReadError(
            f'{purpose} needs highdicom: pip install "msa_hf[dicom]" (or pip install highdicom).'
        ) from error
    return highdicom


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_volume_file(path: str | Path) -> bool:
    """Whether `path` names a volume file by its suffix (`VOLUME_FILE_SUFFIXES`): NIfTI, NRRD or MetaImage."""
    return str(path).lower().endswith(VOLUME_FILE_SUFFIXES)


def volume_file_suffix(path: str | Path) -> str:
    """A volume file's suffix as written (`case.nii.gz` -> `.nii.gz`, `ct.NRRD` -> `.NRRD`); a file of any
    other kind, its last suffix."""
    name = Path(path).name
    for suffix in sorted(VOLUME_FILE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[-len(suffix) :]
    return Path(path).suffix


def volume_output_suffix(input_path: str | Path, label_map: bool = False) -> str:
    """The suffix a volume's mask is written with unless told otherwise: the input's own format in its
    one-file form (`.nrrd` for `.nrrd` and `.nhdr`, `.mha` for `.mha` and `.mhd`), else `.nii.gz` (NIfTI,
    DICOM). With `label_map` (a case's named structures in one file), an NRRD input's as 3D Slicer names a
    segmentation, `.seg.nrrd`, so that Slicer opens it as one."""
    if is_itk_file(input_path):
        if volume_file_suffix(input_path).lower() in (".nrrd", ".nhdr"):
            return ".seg.nrrd" if label_map else ".nrrd"
        return ".mha"
    return ".nii.gz"


def volume_file_stem(path: str | Path) -> str:
    """A file's name without its suffix, a volume's whole suffix (`case.nii.gz`, `case.nrrd` -> `case`;
    Slicer's `case.seg.nrrd` -> `case.seg`)."""
    name = Path(path).name
    return name[: len(name) - len(volume_file_suffix(path))]


def _canonical(image, source: str, modality: str, channel: int | None, is_label: bool) -> Volume:
    import nibabel as nib

    shape = image.shape
    if len(shape) == 4:
        if shape[3] == 1:
            image = image.slicer[..., 0]
        elif channel is None:
            raise VolumeReadError(
                f"{source}: 4-D image of shape {shape} (several channels or time points). MSA takes one 3-D "
                f"volume per case: pick one with --channel k (msa-hf prepare and predict; channel=k in Python), "
                f"0 <= k < {shape[3]}."
            )
        elif not 0 <= channel < shape[3]:
            raise VolumeReadError(f"{source}: channel {channel} out of range for shape {shape}.")
        else:
            image = image.slicer[..., channel]
    elif len(shape) != 3:
        raise VolumeReadError(f"{source}: expected a 3-D volume, got shape {shape}.")
    elif channel is not None and channel != 0:
        raise VolumeReadError(
            f"{source}: channel {channel} asked, but this is a 3-D volume (one channel); drop --channel, which "
            "picks a channel of 4-D images."
        )
    image = nib.as_closest_canonical(image)
    try:
        array = np.asanyarray(image.dataobj)
    except Exception as error:  # truncated gzip, wrong size: nibabel raises several types
        raise VolumeReadError(
            f"{source}: cannot read the voxel data ({type(error).__name__}: {error})."
        ) from error
    if is_label:
        if np.issubdtype(array.dtype, np.floating):
            check_finite(array, source)
            if not np.array_equal(array, np.round(array)):
                raise VolumeReadError(
                    f"{source}: label map has non-integer values (e.g. {array[array != np.round(array)][:3]}); "
                    "a label map holds one integer per structure. Was an image passed as the label, or was it "
                    "resampled with linear interpolation?"
                )
        if array.min() < 0:
            raise VolumeReadError(f"{source}: label map has negative values ({int(array.min())}).")
        if array.max() > MAX_LABEL_VALUE:  # a cast to 16 bits would wrap them onto other labels
            too_large = np.unique(array[array > MAX_LABEL_VALUE])[:5].astype(np.int64).tolist()
            raise VolumeReadError(
                f"{source}: label values {too_large} exceed {MAX_LABEL_VALUE}, the largest a prepared label map "
                "holds; renumber the structures below it."
            )
        array = array.astype(np.uint16 if array.max() > 255 else np.uint8)
    else:
        array = array.astype(np.float32)
        check_finite(array, source)
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return Volume(array=array, affine=image.affine.copy(), spacing=zooms, source=source, modality=modality)


def _open_nifti(path: str | Path) -> Any:
    """nibabel's image of a NIfTI file, its header read and its voxels not yet.

    Raises:
        VolumeReadError: the file is not readable as NIfTI.
    """
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as error:  # nibabel raises ImageFileError, EOFError, zlib errors, ...
        raise VolumeReadError(
            f"{path}: not a readable NIfTI file ({type(error).__name__}: {error})."
        ) from error


def load_nifti(
    path: str | Path, is_label: bool = False, channel: int | None = None, modality: str = "other"
) -> Volume:
    """Load a `.nii` / `.nii.gz` scan (or label map with `is_label=True`) in RAS+ orientation.

    Raises:
        VolumeReadError: unreadable or corrupt file, 4-D without `channel`, NaN/Inf voxels, a label map
            with non-integer or negative values.
    """
    image = _open_nifti(path)
    try:  # from the header, before any voxel is read
        check_nifti_size(path, image.shape, image.header.get_data_dtype().itemsize, image.dataobj.offset)
    except InputTooLargeError as error:
        raise VolumeReadError(str(error)) from error
    return _read_canonical(image, str(path), modality, channel, is_label)


def _read_canonical(image, source: str, modality: str, channel: int | None, is_label: bool) -> Volume:
    """`_canonical` of a file's image, any `ValueError` of its reading (nibabel's among them) a
    `VolumeReadError` naming the file."""
    try:
        return _canonical(image, source, modality, channel, is_label)
    except ValueError as error:
        if isinstance(error, VolumeReadError):
            raise
        raise VolumeReadError(str(error)) from error


def volume_file_header(path: str | Path) -> tuple[np.ndarray, tuple[int, ...]]:
    """A volume file's voxel -> RAS affine `(4, 4)` and shape (`(I, J, K)`, with a fourth entry for several
    channels), from its header alone: no voxel is read.

    Raises:
        VolumeReadError: not a volume file, or not readable as one.
    """
    if is_itk_file(path):
        from msa_hf.data.itk_files import read_itk_header

        try:
            header = read_itk_header(path)
        except ItkReadError as error:
            raise VolumeReadError(str(error)) from error
        return header.affine, header.shape
    if not is_nifti(path):
        raise VolumeReadError(f"{path}: not a {VOLUME_FILE_NAMES} file.")
    image = _open_nifti(path)
    return image.affine, tuple(int(n) for n in image.shape)


def load_itk(
    path: str | Path, is_label: bool = False, channel: int | None = None, modality: str = "other"
) -> Volume:
    """Load an NRRD (`.nrrd`, `.nhdr`) or MetaImage (`.mha`, `.mhd`) scan, or label map with `is_label=True`,
    in RAS+ orientation, as `load_nifti` loads NIfTI (`itk_files`): a vector image's components, or a 4-D
    image's fourth axis, are its channels.

    Raises:
        VolumeReadError: as `load_nifti`; a 3D Slicer segmentation whose segments overlap (several layers).
    """
    import nibabel as nib

    from msa_hf.data.itk_files import read_itk_header, read_itk_voxels

    try:
        header = read_itk_header(path)
        if is_label and len(header.shape) == 4:
            layered = "Segment0_Layer" in header.metadata
            raise VolumeReadError(
                f"{path}: a label map with {header.shape[3]} "
                + (
                    "layers (a 3D Slicer segmentation whose segments overlap), and a label map holds one value "
                    "per voxel here. msa-hf prepare (with --overlapping), score and predict --prompts-from-labels "
                    "read its segments by name; elsewhere, export them from Slicer as a labelmap volume "
                    "(Segmentations, Export to files), or save each structure as a file of its own in a folder."
                    if layered
                    else "channels (components per voxel, or a fourth axis); a label map holds one integer per voxel."
                )
            )
        # the voxel count from the header, before any voxel is read (the data may lie in another file, and
        # compressed or not: a file too short for them is refused by ITK's reader)
        check_voxel_count(header.shape, str(path))
        array = read_itk_voxels(path)
    except (ItkReadError, InputTooLargeError) as error:
        raise VolumeReadError(str(error)) from error
    if array.dtype.itemsize == 8 and np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)  # nibabel takes no 64-bit integers; exact to 2**53, checked after
    return _read_canonical(nib.Nifti1Image(array, header.affine), str(path), modality, channel, is_label)


def dicom_series_slices(
    folder: str | Path, series: str | None = None
) -> tuple[list[tuple[Path, Any]], np.ndarray]:
    """The image slices of a DICOM series in `folder` (its sub-folders included) in order, and the RAS
    affine of their grid.

    `series` chooses the stack where the folder holds several (a study's series, a localizer's planes, the
    echoes or phases of one series: `msa_hf.data.dicom_stacks`), by the key the refusal lists, a series
    number or a series instance UID. Returns `[(file, pydicom dataset), ...]` ordered by position along the
    slice normal (not by file name), and the affine of the voxel grid (i = column, j = row, k = that order)
    in RAS (DICOM's LPS converted), built from ImagePositionPatient / ImageOrientationPatient / PixelSpacing.
    Pixels are not decoded.

    Raises:
        VolumeReadError: no DICOM images, several stacks without `series`, a slice that cannot be read.
    """
    from msa_hf.data.dicom_stacks import choose_stack

    return stack_slices(choose_stack(folder, series), folder)


def stack_slices(stack: Any, folder: str | Path) -> tuple[list[tuple[Path, Any]], np.ndarray]:
    """`dicom_series_slices` of a chosen `DicomStack` of single-frame files."""
    import pydicom

    if stack.multi_frame:
        raise VolumeReadError(
            f"{stack.files[0]}: an enhanced multi-frame file, one DICOM instance for the whole volume, not a "
            "series of slice files: read it with load_volume (its frames' grid: enhanced_frame_grid)."
        )
    found = []
    for file in stack.files:
        try:
            dataset = pydicom.dcmread(file)
        except Exception as error:  # its header was read: the rest of it is damaged
            raise VolumeReadError(
                f"{file}: a DICOM file of the series that cannot be read ({type(error).__name__}: {error}); "
                "reading the series without it would leave a gap. Replace it with an intact copy or "
                "re-export the series."
            ) from error
        if "PixelData" not in dataset:
            raise VolumeReadError(
                f"{file}: a slice of the series without pixel data (the file is cut short); reading the series "
                "without it would leave a gap. Replace it with an intact copy or re-export the series."
            )
        found.append((file, dataset))
    from msa_hf.data.size_limits import check_voxel_count

    # from the headers, before any pixel is decoded
    check_voxel_count((int(found[0][1].Rows), int(found[0][1].Columns), len(found)), f"DICOM series {folder}")
    orientation = np.array(found[0][1].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    found.sort(
        key=lambda item: float(np.dot(np.array(item[1].ImagePositionPatient, dtype=np.float64), normal))
    )
    positions = np.array([np.array(d.ImagePositionPatient, dtype=np.float64) for _, d in found])
    return found, _grid_affine(orientation, found[0][1].PixelSpacing, positions, folder)


def _grid_affine(
    orientation: np.ndarray, pixel_spacing: Any, positions: np.ndarray, source: Any
) -> np.ndarray:
    """The RAS affine of a grid of DICOM slices (i = column, j = row, k = slice) from ImageOrientationPatient,
    PixelSpacing and the slices' ImagePositionPatient `(K, 3)` in order along the normal; uneven steps (a
    missing slice) are warned about and averaged."""
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    row_spacing, column_spacing = (float(v) for v in pixel_spacing)
    normal = np.cross(row_cosine, column_cosine)
    slice_step = (positions[-1] - positions[0]) / (len(positions) - 1) if len(positions) > 1 else normal
    if len(positions) > 1:
        gaps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        if gaps.min() < 1e-6 or gaps.max() - gaps.min() > 0.01 * max(gaps.mean(), 1e-6) + 1e-3:
            warnings.warn(
                f"{source}: uneven slice spacing ({gaps.min():.3f}-{gaps.max():.3f} mm); using the mean.",
                stacklevel=4,
            )
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cosine * column_spacing
    affine_lps[:3, 1] = column_cosine * row_spacing
    affine_lps[:3, 2] = slice_step
    affine_lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps


def frame_value(dataset: Any, frame: int, sequence: str, name: str) -> Any | None:
    """An enhanced multi-frame dataset's functional-group attribute `sequence` > `name` for `frame` (from 0):
    the frame's own, else the shared one; None where neither has it."""
    frames = dataset.get("PerFrameFunctionalGroupsSequence", [])
    own = [frames[frame]] if frame < len(frames) else []
    for group in [*own, *dataset.get("SharedFunctionalGroupsSequence", [])]:
        if sequence in group and name in group[sequence][0]:
            return getattr(group[sequence][0], name)
    return None


def enhanced_frame_grid(
    dataset: Any, source: Any = "", frames: Sequence[int] | None = None
) -> tuple[list[int], np.ndarray]:
    """The frames of an enhanced multi-frame DICOM dataset in position order (frame indices from 0) and the RAS
    affine of their grid (i = column, j = row, k = that order), from each frame's plane position and the
    (per-frame or shared) plane orientation and pixel measures; what `labels_on_series_grid` maps a label
    volume onto for a DICOM-SEG of the file. `frames`: the frames of one of the file's stacks
    (`DicomStack.frame_indices`; None: every frame).

    Raises:
        VolumeReadError: a frame without a position, orientation or pixel spacing.
    """
    chosen = (
        list(range(len(dataset.get("PerFrameFunctionalGroupsSequence", []))))
        if frames is None
        else list(frames)
    )

    def value(frame: int, sequence: str, name: str) -> Any:
        found = frame_value(dataset, frame, sequence, name)
        if found is None:
            raise VolumeReadError(f"{source}: frame {frame + 1} has no {sequence} {name}.")
        return found

    first = chosen[0]
    orientation = np.array(
        value(first, "PlaneOrientationSequence", "ImageOrientationPatient"), dtype=np.float64
    )
    normal = np.cross(orientation[:3], orientation[3:])
    positions = {
        f: np.array(value(f, "PlanePositionSequence", "ImagePositionPatient"), float) for f in chosen
    }
    order = sorted(chosen, key=lambda f: float(np.dot(positions[f], normal)))
    depths = [round(float(np.dot(positions[f], normal)), 3) for f in order]
    if len(set(depths)) != len(depths):  # two frames at one position: two volumes, never interleaved
        twins = next(order[k : k + 2] for k in range(len(order) - 1) if depths[k] == depths[k + 1])
        raise VolumeReadError(
            f"{source}: frames {twins[0] + 1} and {twins[1] + 1} lie at one position, and nothing in the file "
            f"tells their volumes apart, so they cannot be stacked into one; {MULTI_FRAME_ADVICE}."
        )
    spacing = value(first, "PixelMeasuresSequence", "PixelSpacing")
    return order, _grid_affine(orientation, spacing, np.array([positions[f] for f in order]), source)


def load_dicom_series(folder: str | Path, series: str | None = None) -> Volume:
    """Load a DICOM series (a folder of slice files, or the stack `series` names in it) as a RAS+ volume in
    Hounsfield units for CT.

    Slices are chosen, ordered and placed as `dicom_series_slices` says; rescale slope and intercept are
    applied. A stack that is one enhanced multi-frame file is read by `load_enhanced_dicom`.

    Raises:
        VolumeReadError: no DICOM images, several stacks without `series`, inconsistent slices.
    """
    from msa_hf.data.dicom_stacks import choose_stack

    stack = choose_stack(folder, series)
    if stack.multi_frame:
        return load_enhanced_dicom(stack.files[0], stack.frame_indices)
    found, affine_ras = stack_slices(stack, folder)
    slices = []
    for file, dataset in found:
        try:
            pixels = dataset.pixel_array.astype(np.float32)
        except Exception as error:
            raise VolumeReadError(
                f"{file}: cannot decode pixel data ({type(error).__name__}: {error}). {DICOM_DECODERS_HINT}"
            ) from error
        if slices and pixels.shape != slices[0].shape:
            raise VolumeReadError(
                f"{file}: slice shape {pixels.shape} differs from {slices[0].shape} in {folder}."
            )
        slope = float(dataset.get("RescaleSlope", 1.0))
        intercept = float(dataset.get("RescaleIntercept", 0.0))
        slices.append(pixels * slope + intercept)
    # voxel (i = column, j = row, k = slice)
    array = np.stack([s.T for s in slices], axis=-1)
    modality = str(found[0][1].get("Modality", "other")).upper()
    modality = modality if modality in ("CT", "MR") else "other"
    return canonical_volume(array, affine_ras, str(folder), modality=modality)


def load_enhanced_dicom(path: str | Path, frames: Sequence[int] | None = None) -> Volume:
    """An enhanced multi-frame DICOM file (a CT or MR volume in one file, each frame with its position) as a
    RAS+ volume in Hounsfield units for CT, read with highdicom (the `dicom` extra), which orders the frames
    into a regular grid. `frames`: the frames of one of the volumes the file holds (`DicomStack.frame_indices`:
    one echo, phase or b-value), placed by their positions (`enhanced_frame_grid`) with each frame's rescale;
    None: the whole file.

    Raises:
        VolumeReadError: no highdicom, a file too large, or frames that do not form one regular volume.
    """
    import pydicom

    from msa_hf.data.size_limits import check_voxel_count

    highdicom = import_highdicom("reading an enhanced multi-frame DICOM volume")
    path = Path(path)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    count = int(header.get("NumberOfFrames", 1) or 1)
    check_voxel_count(
        (int(header.Rows), int(header.Columns), count if frames is None else len(frames)),
        f"DICOM file {path}",
    )
    modality = str(header.get("Modality", "other")).upper()
    modality = modality if modality in ("CT", "MR") else "other"
    if frames is not None:
        return _enhanced_frames(path, frames, modality)
    try:
        volume = highdicom.imread(path).get_volume(dtype=np.float32)
    except Exception as error:  # highdicom says why the frames are not one volume
        raise VolumeReadError(
            f"{path}: its {count} frames cannot be read as one volume ({type(error).__name__}: {error}); "
            f"{MULTI_FRAME_ADVICE}."
        ) from error
    # highdicom's voxel (slice, row, column) in LPS -> this module's (column, row, slice) in RAS
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(volume.affine)[:, [2, 1, 0, 3]]
    return canonical_volume(np.asarray(volume.array).transpose(2, 1, 0), affine, str(path), modality=modality)


def _enhanced_frames(path: Path, frames: Sequence[int], modality: str) -> Volume:
    """`frames` of the enhanced multi-frame file `path` as one RAS+ volume: each frame's stored values through
    its rescale (per frame, else the file's), stacked in position order on their grid."""
    import pydicom

    dataset = pydicom.dcmread(path)
    order, affine = enhanced_frame_grid(dataset, path, frames)
    try:
        pixels = dataset.pixel_array
    except Exception as error:
        raise VolumeReadError(
            f"{path}: cannot decode pixel data ({type(error).__name__}: {error}). {DICOM_DECODERS_HINT}"
        ) from error
    pixels = pixels.reshape(-1, int(dataset.Rows), int(dataset.Columns))  # (frames, rows, columns)
    slices = []
    for frame in order:
        slope = frame_value(dataset, frame, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = frame_value(dataset, frame, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = float(dataset.get("RescaleSlope", 1.0) if slope is None else slope)
        intercept = float(dataset.get("RescaleIntercept", 0.0) if intercept is None else intercept)
        slices.append(pixels[frame].astype(np.float32) * slope + intercept)
    # voxel (i = column, j = row, k = position)
    return canonical_volume(np.stack([s.T for s in slices], axis=-1), affine, str(path), modality=modality)


def canonical_volume(
    array: np.ndarray, affine: np.ndarray, source: str, is_label: bool = False, modality: str = "other"
) -> Volume:
    """A voxel array `(I, J, K)` on `affine` (voxel -> RAS mm) as a RAS+ `Volume`, checked as a loaded file
    is (finite intensities; integer, non-negative label values)."""
    import nibabel as nib

    return _canonical(nib.Nifti1Image(array, affine), source, modality, None, is_label=is_label)


def guess_modality(volume: Volume) -> str:
    """The modality that picks a volume's intensity transform: its own ("CT"/"MR" from the DICOM header or
    the caller), else "CT" when it holds air-like values (<= -500, Hounsfield units), else "MR"."""
    if volume.modality != "other":
        return volume.modality
    return "CT" if float(volume.array.min()) <= -500 else "MR"


def load_volume(
    path: str | Path,
    is_label: bool = False,
    channel: int | None = None,
    modality: str = "other",
    series: str | None = None,
) -> Volume:
    """A NIfTI, NRRD or MetaImage file, a DICOM series folder or an enhanced multi-frame DICOM file, in RAS+
    orientation (see `load_nifti`, `load_itk`, `load_dicom_series`); `series` chooses the stack of a DICOM folder, or of an enhanced file,
    that holds several (`msa_hf.data.dicom_stacks`)."""
    path = Path(path)
    enhanced = (
        not is_label and not path.is_dir() and not is_volume_file(path) and is_enhanced_dicom_file(path)
    )
    if series is not None and not path.is_dir() and not enhanced:
        raise VolumeReadError(f"{path}: a series is chosen in a DICOM folder; this is not one.")
    if path.is_dir() or enhanced:  # an enhanced file may hold several volumes: its stacks, as a folder's
        if is_label:
            raise VolumeReadError(
                f"{path}: label maps are read from NIfTI files, not DICOM folders (DICOM-SEG)."
            )
        return load_dicom_series(path, series)
    if is_nifti(path):
        return load_nifti(path, is_label=is_label, channel=channel, modality=modality)
    if is_itk_file(path):
        return load_itk(path, is_label=is_label, channel=channel, modality=modality)
    raise VolumeReadError(
        f"{path}: not a {VOLUME_FILE_NAMES} file, a DICOM series folder or an enhanced multi-frame DICOM volume."
    )


def is_dicom_stack_source(path: str | Path) -> bool:
    """Whether `path` is read as DICOM image stacks (`msa_hf.data.dicom_stacks`): a folder (a series, a
    study) or an enhanced multi-frame file, either of which may hold several volumes that `series=` chooses
    among."""
    return Path(path).is_dir() or is_enhanced_dicom_file(path)


def is_enhanced_dicom_file(path: str | Path) -> bool:
    """Whether `path` is one DICOM file holding a whole CT/MR volume (enhanced multi-frame), from its header."""
    from msa_hf.data.dicom_stacks import is_enhanced_volume
    from msa_hf.data.image_files import is_dicom_file

    path = Path(path)
    if not path.is_file() or not is_dicom_file(path):
        return False
    import pydicom

    try:
        return is_enhanced_volume(pydicom.dcmread(path, stop_before_pixels=True))
    except Exception:  # noqa: BLE001 - not readable as DICOM: not such a file; its reader says why
        return False


def axial_slices(array: np.ndarray) -> np.ndarray:
    """RAS+ `(X, Y, Z)` -> `(Z, H=Y, W=X)` display slices (anterior at the top, patient left on the left):
    `msa_hf.data.planes.display_slices` of the axial plane."""
    return display_slices(array, "axial")


def volume_from_axial_slices(slices: np.ndarray) -> np.ndarray:
    """Inverse of `axial_slices`: `(Z, H, W)` -> RAS+ `(X, Y, Z)`."""
    return volume_from_display_slices(slices, "axial")


GRID_TOLERANCE_MM = 1e-2  # voxel-to-world affines this close are one grid (what headers round away)


def affines_match(affine: np.ndarray, other: np.ndarray) -> bool:
    """Whether two voxel-to-world affines `(4, 4)` place voxels alike, within `GRID_TOLERANCE_MM`."""
    return bool(np.allclose(affine, other, atol=GRID_TOLERANCE_MM))


def canonical_grid(affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The RAS+ grid, `(affine (4, 4), (X, Y, Z))`, that a voxel grid of `affine` and `shape` (its first three
    axes) becomes when a volume on it is read (`load_volume` turns every volume to RAS+), from the header
    alone."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    shape = tuple(int(n) for n in shape[:3])
    orientation = io_orientation(affine)
    ras = [0, 0, 0]
    for axis, size in zip(orientation[:, 0].astype(int), shape, strict=True):
        ras[axis] = size
    return np.asarray(affine, dtype=np.float64) @ inv_ornt_aff(orientation, shape), (ras[0], ras[1], ras[2])


def volume_grid(path: str | Path, series: str | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The RAS+ grid `(affine (4, 4), (X, Y, Z))` a volume file, a DICOM series folder or an enhanced
    multi-frame file (its stack `series`) is read onto, from its headers: no voxel is decoded.

    Raises:
        VolumeReadError: as `volume_file_header` and `dicom_stacks.choose_stack`.
    """
    if is_dicom_stack_source(path):
        from msa_hf.data.dicom_stacks import read_stack

        images = read_stack(path, series)
        return canonical_grid(images.affine, images.shape)
    return canonical_grid(*volume_file_header(path))


def sub_grid_offset(
    affine: np.ndarray, shape: Sequence[int], grid_affine: np.ndarray, grid_shape: Sequence[int]
) -> tuple[int, int, int] | None:
    """Where a grid (`affine`, `shape`) lies within another (`grid_affine`, `grid_shape`), both RAS+ and `(4,
    4)`: the voxel of the other that its first voxel is, where both have the same axes and voxel size, its
    voxels fall on the other's (within `GRID_TOLERANCE_MM`) and it lies inside it. None otherwise. 3D Slicer
    saves a segmentation cropped so (to its segments, or its own extent), and some tools save a label map of
    a region of interest alike."""
    if not np.allclose(affine[:3, :3], grid_affine[:3, :3], atol=GRID_TOLERANCE_MM):
        return None
    offset = np.linalg.solve(grid_affine[:3, :3], affine[:3, 3] - grid_affine[:3, 3])
    rounded = np.round(offset)
    if np.linalg.norm(grid_affine[:3, :3] @ (offset - rounded)) > GRID_TOLERANCE_MM:
        return None
    start = rounded.astype(int)
    if (start < 0).any() or (start + np.asarray(shape[:3]) > np.asarray(grid_shape[:3])).any():
        return None
    return int(start[0]), int(start[1]), int(start[2])


def placed_on_grid(volume: Volume, shape: Sequence[int], affine: np.ndarray) -> Volume | None:
    """A RAS+ label volume that lies on a part of a grid (`sub_grid_offset`), padded with 0 onto the whole
    grid (`shape` `(X, Y, Z)`, `affine` RAS+); None where it does not lie on it."""
    start = sub_grid_offset(volume.affine, volume.array.shape, affine, shape)
    if start is None:
        return None
    array = np.zeros(tuple(shape[:3]) + volume.array.shape[3:], volume.array.dtype)
    box = tuple(slice(begin, begin + size) for begin, size in zip(start, volume.array.shape[:3], strict=True))
    array[box] = volume.array
    return dataclasses.replace(volume, array=array, affine=np.asarray(affine, dtype=np.float64))


def label_on_image_grid(image: Volume, label: Volume) -> Volume:
    """`label` on `image`'s voxel grid: as it is where their shapes agree (a warning where their affines
    do not), else placed onto it where it lies on a part of it (`placed_on_grid`: a segmentation cropped
    to its structures); refused otherwise."""
    if image.array.shape != label.array.shape:
        placed = placed_on_grid(label, image.array.shape, image.affine)
        if placed is not None:
            return placed
    check_same_grid(image, label)
    return label


def check_same_grid(image: Volume, label: Volume) -> None:
    """Raise when the label map is not on the image's voxel grid; warn when their affines disagree."""
    if image.array.shape != label.array.shape:
        raise VolumeReadError(
            f"{label.source}: label shape {label.array.shape} differs from image {image.source} "
            f"{image.array.shape} (after reorientation). Resample the label onto the image grid."
        )
    if not affines_match(image.affine, label.affine):
        warnings.warn(
            f"{label.source}: affine differs from {image.source}'s; using the image's geometry.", stacklevel=2
        )


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path) -> None:
    """Write a RAS+ `(X, Y, Z)` array (a reassembled prediction, a DICOM series' mask) as NIfTI on `affine`, in
    the scanner's coordinates (qform and sform code 1) and millimetres. A grid whose slices step off their
    normal (a CT series acquired with the gantry tilted, `tilt_degrees`) has a shear that the sform holds and a
    qform cannot: its qform is then left unknown rather than set to a rigid approximation that places voxels
    elsewhere."""
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    image = nib.Nifti1Image(np.asarray(array), affine)
    image.set_qform(affine, code=0 if tilt_degrees(affine) > TILT_TOLERANCE_DEGREES else 1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")  # the unit of every affine here; a reader told none must guess it
    nib.save(image, str(path))


def save_volume(
    array: np.ndarray, affine: np.ndarray, path: str | Path, names: Mapping[int, str] | None = None
) -> None:
    """Write an `(X, Y, Z)` array on `affine` (voxel -> RAS mm) in the format `path`'s suffix names
    (`ONE_FILE_VOLUME_SUFFIXES`): NIfTI (`save_nifti`), NRRD or MetaImage (`itk_files.write_itk_volume`). A
    label map with `names` (`{label value: name}`, the structures written), or any named `.seg.nrrd`, goes to
    NRRD as a 3D Slicer segmentation whose segments they name
    (`slicer_segmentations.write_slicer_segmentation`); NIfTI and MetaImage have no place for names."""
    from msa_hf.data.itk_files import write_itk_volume
    from msa_hf.data.slicer_segmentations import is_slicer_segmentation_path, write_slicer_segmentation

    if is_slicer_segmentation_path(path) or (names is not None and str(path).lower().endswith(".nrrd")):
        try:
            write_slicer_segmentation(array, affine, path, names)
        except ItkReadError as error:
            raise VolumeReadError(str(error)) from error
    elif is_nifti(path):
        save_nifti(array, affine, path)
    elif str(path).lower().endswith(ITK_OUTPUT_SUFFIXES):
        try:
            write_itk_volume(array, affine, path)
        except ItkReadError as error:
            raise VolumeReadError(str(error)) from error
    else:
        raise ValueError(f"{path}: a volume is written as {', '.join(ONE_FILE_VOLUME_SUFFIXES)}.")
