# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Medical data for MSA as Hugging Face Datasets.

Folder -> dataset directory: `prepare_dataset` (CLI `msa-hf prepare`); the embedded default:
`build_mni152_tissue_dataset` (CLI `msa-hf build-default-data`). Dataset -> model inputs:
`to_binary_tasks` + `SamSegmentationTransform` (2-D), `VolumeWindowDataset` + `SamVolumeTransform`
(3-D, depth branch). Preprocessing transforms live in `msa_hf.data.transforms`; prompt simulation in
`msa_hf.prompts`. nibabel / pydicom / nilearn (the `medical` extra) are imported only when used.
"""

from .default_dataset import (
    DEFAULT_DATASET_DIR,
    MNI_TISSUE_CLASSES,
    build_mni152_tissue_dataset,
    ensure_default_dataset,
    mni152_tissue_volumes,
)
from .image_files import ImageReadError, read_image, read_mask
from .label_tables import LabelTableError, parse_label_table
from .prepare import (
    PrepareOptions,
    PrepareReport,
    load_prepared,
    prepare_dataset,
    read_class_names,
    split_cases,
)
from .slice_dataset import SLICE_FEATURES, SliceParquetWriter
from .sources import CaseFiles, SourceLayoutError, find_image_pairs, find_volume_pairs
from .tasks import TASK_FEATURES, PromptSampling, SamSegmentationTransform, to_binary_tasks
from .transforms import (
    CT_WINDOW_PRESETS,
    GrayscaleToRGB,
    IntensityJitter,
    OnKeys,
    PercentileNormalize,
    RandomSpatialAugment,
    SamNormalize,
    ScaleIntensity,
    WindowIntensity,
    resample_to_spacing,
    resize_and_pad,
)
from .volume_windows import (
    SamVolumeTransform,
    SliceWindow,
    VolumeWindowDataset,
    reassemble_volume,
    slice_windows,
)
from .volumes import (
    Volume,
    VolumeReadError,
    axial_slices,
    load_dicom_series,
    load_nifti,
    load_volume,
    save_nifti,
    volume_from_axial_slices,
)

__all__ = [
    "CT_WINDOW_PRESETS",
    "DEFAULT_DATASET_DIR",
    "MNI_TISSUE_CLASSES",
    "SLICE_FEATURES",
    "TASK_FEATURES",
    "CaseFiles",
    "GrayscaleToRGB",
    "ImageReadError",
    "IntensityJitter",
    "LabelTableError",
    "OnKeys",
    "PercentileNormalize",
    "PrepareOptions",
    "PrepareReport",
    "PromptSampling",
    "RandomSpatialAugment",
    "SamNormalize",
    "SamSegmentationTransform",
    "SamVolumeTransform",
    "ScaleIntensity",
    "SliceParquetWriter",
    "SliceWindow",
    "SourceLayoutError",
    "Volume",
    "VolumeReadError",
    "VolumeWindowDataset",
    "WindowIntensity",
    "axial_slices",
    "build_mni152_tissue_dataset",
    "ensure_default_dataset",
    "find_image_pairs",
    "find_volume_pairs",
    "load_dicom_series",
    "load_nifti",
    "load_prepared",
    "load_volume",
    "mni152_tissue_volumes",
    "parse_label_table",
    "prepare_dataset",
    "read_class_names",
    "read_image",
    "read_mask",
    "reassemble_volume",
    "resample_to_spacing",
    "resize_and_pad",
    "save_nifti",
    "slice_windows",
    "split_cases",
    "to_binary_tasks",
    "volume_from_axial_slices",
]
