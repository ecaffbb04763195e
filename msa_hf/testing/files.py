# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Small input files with known content (PNG folders, NIfTI cases, DICOM series, a ball volume), for tests
and examples. NIfTI and DICOM writers need the `medical` extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# voxel axes (i, j, k) -> world: i runs posterior (-y) at 0.8 mm, j runs superior (+z) at 2.5 mm,
# k runs left (-x) at 0.6 mm: permuted, flipped and anisotropic, like many scanner exports.
SCRAMBLED_AFFINE = np.array(
    [[0.0, 0.0, -0.6, 30.0], [-0.8, 0.0, 0.0, 40.0], [0.0, 2.5, 0.0, -20.0], [0.0, 0.0, 0.0, 1.0]]
)


def write_nifti_case(
    folder, name: str, shape=(24, 20, 10), seed: int = 0, affine=None, hu: bool = True
) -> tuple:
    """A Decathlon-style case under `folder` (`imagesTr/<name>_0000.nii.gz`, `labelsTr/<name>.nii.gz`):
    random int16 HU (or float) noise `shape` with two box-shaped structures (labels 1 and 2) on slices
    3-7. Returns `(image, labels)` as written (needs nibabel, the `medical` extra)."""
    import nibabel as nib

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    image = (
        rng.integers(-1000, 1000, shape).astype(np.int16)
        if hu
        else rng.random(shape).astype(np.float32) * 500
    )
    labels = np.zeros(shape, np.uint8)
    labels[4:12, 5:13, 3:6] = 1
    labels[14:20, 6:12, 4:8] = 2
    affine = np.diag([0.7, 0.7, 3.0, 1.0]) if affine is None else affine
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "labelsTr" / f"{name}.nii.gz")
    return image, labels


def _blob_mask(height: int, width: int, seed: int, values=(1,)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for value in values:
        y, x = rng.integers(2, height - 10), rng.integers(2, width - 10)
        mask[y : y + 8, x : x + 8] = value
    return mask


def write_itk_copy(nifti: str | Path, path: str | Path, compress: bool = False) -> Path:
    """The NIfTI volume `nifti` written as `path` (NRRD or MetaImage, by its suffix; `.nhdr` and `.mhd` beside
    their data file) by ITK itself: the same voxels on the same grid, without NIfTI's own header fields
    (which MetaImage has no place for: ITK warns of each). Needs SimpleITK (the `medical` extra)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(nifti))
    copy = sitk.GetImageFromArray(
        sitk.GetArrayFromImage(image), isVector=image.GetNumberOfComponentsPerPixel() > 1
    )
    copy.CopyInformation(image)
    sitk.WriteImage(copy, str(path), useCompression=compress)
    return Path(path)


def write_png_folder(
    root: Path, count: int = 6, layout: str = "suffix"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images of three kinds (8-bit gray, 16-bit gray, RGB) with binary {0,255} or {0,1,2} masks."""
    rng = np.random.default_rng(0)
    written = {}
    for index in range(count):
        case = f"patient{index // 2}_img{index}"
        kind = index % 3
        if kind == 0:
            image = rng.integers(0, 256, (40, 56), dtype=np.uint8)
        elif kind == 1:
            image = rng.integers(0, 65536, (40, 56), dtype=np.uint16)
        else:
            image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        labels = _blob_mask(40, 56, index, values=(1, 2) if index % 2 else (1,))
        stored = labels * 255 if index % 2 == 0 else labels  # binary masks saved as 0/255
        if layout == "suffix":
            image_path, mask_path = root / f"{case}.png", root / f"{case}_mask.png"
        elif layout == "folders":
            image_path, mask_path = root / "images" / f"{case}.png", root / "masks" / f"{case}.png"
        else:
            image_path, mask_path = root / "train" / f"{case}.png", root / "train" / f"{case}_label.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_path)
        Image.fromarray(stored).save(mask_path)
        written[case] = (image, labels)
    if layout == "metadata":
        lines = [
            json.dumps(
                {"file_name": f"train/{c}.png", "label_file_name": f"train/{c}_label.png", "case_id": c[:8]}
            )
            for c in written
        ]
        (root / "metadata.jsonl").write_text("\n".join(lines))
    (root / "labels.json").write_text(json.dumps({"0": "background", "1": "lesion", "2": "organ"}))
    return written


def write_dicom_series(
    folder: Path,
    volume_hu: np.ndarray,
    spacing=(0.75, 0.5),
    thickness=2.0,
    series_number: int = 3,
    description: str = "",
    uids: tuple[str, str, str] | None = None,
    attributes: dict | None = None,
    orientation=(1, 0, 0, 0, 1, 0),
    file_prefix: str = "IM",
    instance_numbers: list[int] | None = None,
    step: tuple[float, float, float] | None = None,
) -> tuple[str, str, str]:
    """A CT series: `volume_hu` (slices, rows, cols), stored as uint16 with slope 1 / intercept -1024,
    written under shuffled file names so only ImagePositionPatient gives the order.

    Several series can share `folder` (a study exported flat): give each its own `file_prefix`. `uids`
    (series, study, frame of reference; fresh ones by default, returned) puts a second acquisition into
    the same series; `attributes` are set on every slice (such as `{"AcquisitionNumber": 2}`); `orientation`
    is ImageOrientationPatient, the slices stepping along its normal; `instance_numbers[k]` numbers slice `k`
    (default `k + 1`); `step` is the move from one slice's ImagePositionPatient to the next (default
    `thickness` along the normal; along the table axis `(0, 0, thickness)` with a tilted `orientation`, a CT
    acquired with the gantry tilted)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = uids or (generate_uid(), generate_uid(), generate_uid())
    normal = np.cross(np.array(orientation[:3], float), np.array(orientation[3:], float))
    order = np.random.default_rng(0).permutation(len(volume_hu))
    for file_index, slice_index in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID = "CT", series_uid
        # patient, study and frame of reference, as every scanner writes them (a DICOM-SEG copies them)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "P0", "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.StudyDate, ds.StudyTime = study_uid, "1", "20260101", "120000"
        ds.ReferringPhysicianName, ds.AccessionNumber = "", ""
        ds.FrameOfReferenceUID, ds.SeriesNumber = frame_uid, series_number
        if description:
            ds.SeriesDescription = description
        ds.InstanceNumber = instance_numbers[slice_index] if instance_numbers else int(slice_index) + 1
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [
            float(v)
            for v in np.array([-10.0, -20.0, 100.0])
            + slice_index * (thickness * normal if step is None else np.asarray(step, float))
        ]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.SliceThickness = thickness
        ds.Rows, ds.Columns = volume_hu.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        for name, value in (attributes or {}).items():
            setattr(ds, name, value)
        ds.PixelData = (volume_hu[slice_index] + 1024).astype(np.uint16).tobytes()
        ds.save_as(folder / f"{file_prefix}{file_index:04d}", enforce_file_format=True)
    return series_uid, study_uid, frame_uid


def write_enhanced_acquisitions(
    folder: Path, volumes_hu: list[np.ndarray], numbers: list[int] | None = None, series_number: int = 4
) -> Path:
    """Several acquisitions of one CT series at the same positions (`volumes_hu`, each `(slices, rows, cols)`,
    AcquisitionNumber `numbers`, default 1, 2, ...): written as classic files in `folder/dual` (series 3) and
    converted into one enhanced multi-frame file `folder/file/CT.dcm` (`series_number`), which is returned. Needs
    highdicom (the `dicom` extra)."""
    import highdicom
    import pydicom

    numbers = numbers or list(range(1, len(volumes_hu) + 1))
    uids = None
    for index, (volume, number) in enumerate(zip(volumes_hu, numbers, strict=True)):
        uids = write_dicom_series(
            folder / "dual",
            volume,
            uids=uids,
            attributes={"AcquisitionNumber": number},
            file_prefix=f"A{index}_",
        )
    datasets = [pydicom.dcmread(path) for path in sorted((folder / "dual").iterdir())]
    (folder / "file").mkdir(parents=True, exist_ok=True)
    highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=highdicom.UID(), series_number=series_number,
        sop_instance_uid=highdicom.UID(), instance_number=1,
    ).save_as(folder / "file" / "CT.dcm")  # fmt: skip
    return folder / "file" / "CT.dcm"


def sphere_volume(shape=(16, 32, 32), centre=(8, 15, 17), radius=6.0) -> np.ndarray:
    """`(N, H, W)` display slices holding a bright ball: the ground truth of propagation."""
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    distance = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    return distance <= radius**2
