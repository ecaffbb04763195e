# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The embedded default dataset: brain tissue classes of the MNI ICBM152 2009a T1 template.

`nilearn` ships the template (197 x 233 x 189 voxels, 1 mm, skull-stripped) with grey- and white-matter
probability maps inside its wheel, so this builds with no download. Each brain voxel (template > 0.2,
nilearn's brain mask) is labelled with its most probable tissue: CSF (1 - GM - WM), grey matter or white
matter. A real MRI with a real (probabilistic, atlas-derived) segmentation: good for exercising the whole
pipeline offline, and honest about being one averaged brain, not a patient cohort.

One brain cannot be split by patient, so the "cases" are axial slabs of `slab_thickness` slices separated
by `gap` discarded slices; whole slabs go to train, validation or test. Neighbouring slabs are still
similar anatomy: validation/test scores measure fit to unseen slices of this brain, not generalisation to
new subjects. The dataset card says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msa_hf.data.prepare import PrepareReport, split_cases, write_dataset_metadata
from msa_hf.data.slice_dataset import SPLITS, SliceParquetWriter, slice_row, split_file
from msa_hf.data.volumes import axial_slices
from msa_hf.output_files import atomic_folder

MNI_TISSUE_CLASSES = {1: "csf", 2: "grey_matter", 3: "white_matter"}
MNI_LICENSE_NOTICE = """The MNI ICBM152 2009a template and tissue maps are redistributed (inside the `nilearn`
package) under the McGill notice:

> Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute,
> McGill University. Permission to use, copy, modify, and distribute this software and its documentation
> for any purpose and without fee is hereby granted, provided that the above copyright notice appear in
> all copies. The authors and McGill University make no representations about the suitability of this
> software for any purpose. It is provided "as is" without express or implied warranty. The authors are
> not responsible for any data loss, equipment damage, property loss, or injury to subjects or patients
> resulting from the use or misuse of this software package.

References: Fonov et al., NeuroImage 54(1), 2011; Fonov et al., NeuroImage 47, S102, 2009; Collins et
al., Proc. BrainMap 1999. The label maps here (argmax of the tissue probabilities) are derived by msa_hf."""


def mni152_tissue_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The template and its tissue label map, RAS+ `(X, Y, Z)`.

    Returns:
        image `(197, 233, 189)` uint8 (the template's 8-bit values), labels `(197, 233, 189)` uint8 with
        values in `MNI_TISSUE_CLASSES` (0 outside the brain), and the `(4, 4)` affine.
    """
    from nilearn import datasets as nilearn_datasets

    template = nilearn_datasets.load_mni152_template(resolution=1)
    t1 = np.asanyarray(template.dataobj).astype(np.float32)
    grey = np.asanyarray(nilearn_datasets.load_mni152_gm_template(resolution=1).dataobj).astype(np.float32)
    white = np.asanyarray(nilearn_datasets.load_mni152_wm_template(resolution=1).dataobj).astype(np.float32)
    brain = t1 > 0.2  # nilearn's load_mni152_brain_mask threshold
    csf = np.clip(1.0 - grey - white, 0.0, 1.0)
    labels = (np.argmax(np.stack([csf, grey, white]), axis=0) + 1).astype(np.uint8)
    labels[~brain] = 0
    # the template's values are k/255 exactly (8-bit source); keep them as uint8 losslessly
    image = np.round(t1 * 255).astype(np.uint8)
    return image, labels, template.affine.copy()


def build_mni152_tissue_dataset(
    output: str | Path,
    slab_thickness: int = 10,
    gap: int = 3,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    overwrite: bool = False,
) -> PrepareReport:
    """Write the tissue dataset directory (same layout as `prepare_dataset`) to `output`."""
    image, labels, affine = mni152_tissue_volumes()
    return write_template_dataset(
        output, image, labels, affine, MNI_TISSUE_CLASSES,
        name="MNI152 brain tissue (msa_hf default dataset)",
        description=(
            "Brain tissue segmentation (CSF, grey matter, white matter) of the MNI ICBM152 2009a T1 template "
            "(1 mm, skull-stripped), built offline from the copy bundled in the `nilearn` package. Labels "
            "are the most probable tissue of the template's probability maps inside the brain mask."
        ),
        slab_thickness=slab_thickness, gap=gap, split=split, seed=seed, overwrite=overwrite,
    )  # fmt: skip


def write_template_dataset(
    output: str | Path,
    image: np.ndarray,
    labels: np.ndarray,
    affine: np.ndarray,
    classes: dict[int, str],
    name: str,
    description: str,
    slab_thickness: int = 10,
    gap: int = 3,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    overwrite: bool = False,
) -> PrepareReport:
    """A dataset directory from one template volume: `image` and `labels` `(X, Y, Z)` RAS+ cut into axial
    slabs of `slab_thickness` slices, `gap` slices apart, whole slabs assigned to train/validation/test."""
    output = Path(output)
    with atomic_folder(output, overwrite) as staging:
        return _build_into(
            staging,
            output,
            image,
            labels,
            affine,
            classes,
            name,
            description,
            slab_thickness,
            gap,
            split,
            seed,
        )


def _build_into(
    output: Path,
    final: Path,
    image: np.ndarray,
    labels: np.ndarray,
    affine: np.ndarray,
    classes: dict[int, str],
    name: str,
    description: str,
    slab_thickness: int,
    gap: int,
    split: tuple[float, float, float],
    seed: int,
) -> PrepareReport:
    """`write_template_dataset`'s work, writing into the (staging) folder `output` that becomes `final`."""
    image_slices, label_slices = axial_slices(image), axial_slices(labels)
    labelled = np.flatnonzero(label_slices.reshape(len(label_slices), -1).any(axis=1))
    starts = range(int(labelled[0]), int(labelled[-1]) + 1 - slab_thickness + 1, slab_thickness + gap)
    slabs = {f"mni152_z{start:03d}": range(start, start + slab_thickness) for start in starts}
    splits = split_cases(list(slabs), split, seed)
    report = PrepareReport(output=str(final), class_names=dict(classes))
    counts: dict[int, int] = {}
    for split_name in SPLITS:
        with SliceParquetWriter(split_file(output, split_name)) as writer:
            for case_id in splits[split_name]:
                slab = slabs[case_id]
                slab_affine = affine.copy()
                slab_affine[:3, 3] += affine[:3, 2] * slab.start  # the slab's first slice is its voxel z = 0
                rows = [
                    slice_row(
                        case_id,
                        i,
                        len(slab),
                        image_slices[k],
                        label_slices[k],
                        (1.0, 1.0, 1.0),
                        "mm",
                        slab_affine,
                        "MR",
                    )  # fmt: skip
                    for i, k in enumerate(slab)
                ]
                for row in rows:
                    for value in row["labels_present"]:
                        counts[value] = counts.get(value, 0) + 1
                writer.write_case(rows)
                report.planes[case_id] = "axial"  # what a model adapted on it records (`training_planes`)
                report.cases[split_name] = report.cases.get(split_name, 0) + 1
            report.slices[split_name] = writer.num_rows
    report.slices_per_class = {classes[v]: c for v, c in sorted(counts.items())}
    report.warnings.append(
        f"one template brain: cases are axial slabs of {slab_thickness} slices with {gap}-slice gaps between "
        "them; validation/test measure unseen slices of the same brain, not new subjects."
    )
    write_dataset_metadata(
        output, report, name=name, source_description=description, license_notice=MNI_LICENSE_NOTICE
    )
    return report


DEFAULT_DATASET_DIR = Path("data") / "mni152-tissue"


def ensure_default_dataset(folder: str | Path = DEFAULT_DATASET_DIR) -> Path:
    """Build the default dataset into `folder` unless a complete copy is there; returns `folder`."""
    folder = Path(folder)
    complete = folder / "prepare_report.json"
    if not complete.is_file():
        build_mni152_tissue_dataset(folder, overwrite=True)
    return folder
