# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Medical data for MSA as Hugging Face Datasets.

Folder -> dataset directory: `prepare_dataset` (CLI `msa-hf prepare`); the embedded default:
`build_mni152_objects_dataset` (its tissue configuration: `build_mni152_tissue_dataset`; CLI
`msa-hf build-default-data`). Dataset -> model inputs:
`to_binary_tasks` + `SamSegmentationTransform` (2-D), `VolumeWindowDataset` + `SamVolumeTransform`
(3-D, depth branch). Preprocessing transforms live in `msa_hf.data.transforms`; prompt simulation in
`msa_hf.processing.prompts`. nibabel / pydicom / nilearn / SimpleITK (the `medical` extra) are imported only when
used.
"""

_EXPORTS = {
    "CT_WINDOW_PRESETS": "transforms",
    "CaseFiles": "sources",
    "DEFAULT_DATASET_DIR": "default_dataset",
    "GrayscaleToRGB": "transforms",
    "ImageReadError": "image_files",
    "IntensityJitter": "transforms",
    "LabelTableError": "label_tables",
    "MNI_OBJECT_CLASSES": "mni152_objects",
    "MNI_TISSUE_CLASSES": "default_dataset",
    "OnKeys": "transforms",
    "PercentileNormalize": "transforms",
    "PrepareOptions": "prepare",
    "PrepareReport": "prepare",
    "PromptSampling": "tasks",
    "RandomSpatialAugment": "transforms",
    "SLICE_FEATURES": "slice_dataset",
    "SamNormalize": "transforms",
    "SamSegmentationTransform": "tasks",
    "SamVolumeTransform": "volume_windows",
    "ScaleIntensity": "transforms",
    "SliceParquetWriter": "slice_dataset",
    "SliceWindow": "volume_windows",
    "SourceLayoutError": "sources",
    "TASK_FEATURES": "tasks",
    "Volume": "volumes",
    "VolumeReadError": "volumes",
    "VolumeWindowDataset": "volume_windows",
    "WindowIntensity": "transforms",
    "axial_slices": "volumes",
    "build_mni152_objects_dataset": "mni152_objects",
    "build_mni152_tissue_dataset": "default_dataset",
    "ensure_default_dataset": "default_dataset",
    "find_image_pairs": "sources",
    "find_volume_pairs": "sources",
    "guess_modality": "volumes",
    "load_dicom_series": "volumes",
    "load_nifti": "volumes",
    "load_prepared": "prepare",
    "load_volume": "volumes",
    "mni152_tissue_volumes": "default_dataset",
    "parse_label_table": "label_tables",
    "prepare_dataset": "prepare",
    "read_class_names": "prepare",
    "read_regions": "prepare",
    "structure_mask": "tasks",
    "structure_values": "tasks",
    "read_dicom_image": "image_files",
    "read_image": "image_files",
    "is_dicom_file": "image_files",
    "read_mask": "image_files",
    "reassemble_volume": "volume_windows",
    "resample_to_spacing": "transforms",
    "resize_and_pad": "transforms",
    "save_nifti": "volumes",
    "save_volume": "volumes",
    "select_class_names": "tasks",
    "slice_windows": "volume_windows",
    "split_cases": "prepare",
    "to_binary_tasks": "tasks",
    "volume_from_axial_slices": "volumes",
}


def __getattr__(name: str):
    """Import on first use (PEP 562): training the base on a GPU machine needs only `transforms`, not
    `datasets`/nibabel/pydicom, and `import msa_hf.data.transforms` stays light."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'msa_hf.data' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CT_WINDOW_PRESETS",
    "DEFAULT_DATASET_DIR",
    "MNI_OBJECT_CLASSES",
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
    "build_mni152_objects_dataset",
    "build_mni152_tissue_dataset",
    "ensure_default_dataset",
    "find_image_pairs",
    "find_volume_pairs",
    "guess_modality",
    "load_dicom_series",
    "load_nifti",
    "load_prepared",
    "load_volume",
    "mni152_tissue_volumes",
    "parse_label_table",
    "prepare_dataset",
    "read_class_names",
    "is_dicom_file",
    "read_dicom_image",
    "read_image",
    "read_mask",
    "reassemble_volume",
    "resample_to_spacing",
    "resize_and_pad",
    "save_nifti",
    "save_volume",
    "select_class_names",
    "slice_windows",
    "split_cases",
    "to_binary_tasks",
    "volume_from_axial_slices",
]
