# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The embedded default dataset's targets: objects a click or a box identifies, derived from the MNI152
template's tissue map (`default_dataset.mni152_tissue_volumes`).

Tissues (CSF, grey and white matter) are poor prompt targets: in a slice their boxes nearly coincide, so a
box cannot say which tissue is meant. These targets are compact or one-sided, each with a fixed derivation
from the tissue labels and the template's geometry (RAS+, so a smaller x is the subject's left):

- `ventricles`: CSF deeper than `VENTRICLE_DEPTH_MM` below the brain's surface, the two largest connected
  pieces (the ventricular system; the subarachnoid CSF lies at the surface);
- `deep_grey_left` / `deep_grey_right`: grey matter deeper than `DEEP_GREY_DEPTH_MM`, its largest connected
  piece (grey-matter islands inside the white matter), split at the midline (world x = 0);
- `white_matter_left` / `white_matter_right`: white matter, split at the midline.

`ventricles` is kept out of adaptation by `make train` and scored before and after it: whether adapting to
the other four narrows what the model still segments. The structures never overlap (one label per voxel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msa_hf.data.default_dataset import MNI_TISSUE_CLASSES, mni152_tissue_volumes, write_template_dataset
from msa_hf.data.prepare import PrepareReport

MNI_OBJECT_CLASSES = {
    1: "ventricles",
    2: "deep_grey_left",
    3: "deep_grey_right",
    4: "white_matter_left",
    5: "white_matter_right",
}
HELD_OUT_STRUCTURE = "ventricles"  # scored, never adapted to, by `make train`
ADAPTED_STRUCTURES = tuple(name for name in MNI_OBJECT_CLASSES.values() if name != HELD_OUT_STRUCTURE)
VENTRICLE_DEPTH_MM = 12.0
DEEP_GREY_DEPTH_MM = 26.0
_TISSUE = {name: value for value, name in MNI_TISSUE_CLASSES.items()}


def _largest_components(mask: np.ndarray, count: int) -> np.ndarray:
    """The `count` largest 6-connected pieces of `mask`."""
    from scipy import ndimage

    labelled, found = ndimage.label(mask)
    if found == 0:
        return mask.copy()
    sizes = ndimage.sum(mask, labelled, range(1, found + 1))
    keep = np.argsort(sizes)[::-1][:count] + 1
    return np.isin(labelled, keep)


def mni152_object_labels(tissue: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The object label map (values of `MNI_OBJECT_CLASSES`) of a tissue label map `(X, Y, Z)` (values of
    `MNI_TISSUE_CLASSES`, 0 outside the brain) with RAS+ `affine` `(4, 4)` and 1 mm voxels along x, y, z."""
    from scipy import ndimage

    brain = tissue > 0
    depth = ndimage.distance_transform_edt(brain, sampling=np.abs(np.diag(affine)[:3]))
    csf, grey, white = (tissue == _TISSUE[name] for name in ("csf", "grey_matter", "white_matter"))
    # the voxel column of world x = 0: RAS+, so columns below it are the subject's left
    midline = -affine[0, 3] / affine[0, 0]
    left = (np.arange(tissue.shape[0]) < midline)[:, None, None]
    ventricles = _largest_components(csf & (depth > VENTRICLE_DEPTH_MM), 2)
    deep_grey = _largest_components(grey & (depth > DEEP_GREY_DEPTH_MM), 1)
    objects = np.zeros(tissue.shape, np.uint8)
    objects[white & left] = 4
    objects[white & ~left] = 5
    objects[deep_grey & left] = 2
    objects[deep_grey & ~left] = 3
    objects[ventricles] = 1
    return objects


def build_mni152_objects_dataset(
    output: str | Path,
    slab_thickness: int = 10,
    gap: int = 3,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    overwrite: bool = False,
) -> PrepareReport:
    """Write the default dataset (the MNI152 T1 template with `MNI_OBJECT_CLASSES`) to `output`."""
    image, tissue, affine = mni152_tissue_volumes()
    return write_template_dataset(
        output, image, mni152_object_labels(tissue, affine), affine, MNI_OBJECT_CLASSES,
        name="MNI152 brain structures (msa_hf default dataset)",
        description=(
            "Five brain structures of the MNI ICBM152 2009a T1 template (1 mm, skull-stripped), built offline "
            "from the copy bundled in the `nilearn` package: the ventricles, left and right deep grey matter "
            "and left and right white matter, each derived from the most probable tissue of the template's "
            "probability maps by depth below the brain surface, connectivity and the midline."
        ),
        slab_thickness=slab_thickness, gap=gap, split=split, seed=seed, overwrite=overwrite,
    )  # fmt: skip
