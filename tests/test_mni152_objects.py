"""The default dataset's object targets: each derivation checked on a synthetic brain whose answer is known,
then on the template itself."""

from __future__ import annotations

import numpy as np

from msa_hf.data.default_dataset import MNI_TISSUE_CLASSES
from msa_hf.data.mni152_objects import (
    ADAPTED_STRUCTURES,
    HELD_OUT_STRUCTURE,
    MNI_OBJECT_CLASSES,
    build_mni152_objects_dataset,
    mni152_object_labels,
)

CSF, GREY, WHITE = (value for value, _ in sorted(MNI_TISSUE_CLASSES.items()))
OBJECT = {name: value for value, name in MNI_OBJECT_CLASSES.items()}


def _synthetic_brain():
    """A ball brain (radius 40 mm, 1 mm voxels, world x = 0 at voxel column 45): a grey cortex with surface
    CSF, white matter inside, a deep CSF cavity and a deep grey island across the midline, plus a small
    CSF pocket just under the surface and a grey fold near it."""
    shape = (90, 90, 90)
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    centre = 45.0
    radius = np.sqrt((x - centre) ** 2 + (y - centre) ** 2 + (z - centre) ** 2)
    tissue = np.zeros(shape, np.uint8)
    tissue[radius <= 40] = WHITE
    tissue[(radius > 34) & (radius <= 40)] = GREY  # cortex
    tissue[(radius > 38) & (radius <= 40)] = CSF  # subarachnoid CSF, at the surface
    cavity = (np.abs(x - 40) <= 3) & (np.abs(y - 45) <= 8) & (np.abs(z - 38) <= 3)  # left of the midline
    tissue[cavity] = CSF
    island = (np.abs(x - 45) <= 6) & (np.abs(y - 45) <= 3) & (np.abs(z - 53) <= 2)  # across the midline
    tissue[island] = GREY
    pocket = (
        (np.abs(x - 45) <= 1) & (np.abs(y - 45) <= 1) & (np.abs(z - 78) <= 1)
    )  # 7 mm deep: not a ventricle
    tissue[pocket] = CSF
    affine = np.eye(4)
    affine[:3, 3] = (-45.0, -45.0, -45.0)
    return tissue, affine, cavity, island, x


def test_each_target_follows_its_derivation_on_a_brain_with_known_answers():
    tissue, affine, cavity, island, x = _synthetic_brain()
    objects = mni152_object_labels(tissue, affine)
    assert set(np.unique(objects)) == {0, *MNI_OBJECT_CLASSES}
    # ventricles: the deep CSF cavity, not the surface CSF nor the shallow pocket
    assert np.array_equal(objects == OBJECT["ventricles"], cavity)
    # deep grey: the island, split at world x = 0 (RAS+: smaller x is the subject's left); not the cortex
    assert np.array_equal(objects == OBJECT["deep_grey_left"], island & (x < 45))
    assert np.array_equal(objects == OBJECT["deep_grey_right"], island & (x >= 45))
    # white matter, split the same way; every white voxel is in one of the two
    white = tissue == WHITE
    assert np.array_equal(objects == OBJECT["white_matter_left"], white & (x < 45))
    assert np.array_equal(objects == OBJECT["white_matter_right"], white & (x >= 45))
    # nothing outside the brain, and the cortex and surface CSF belong to no target
    assert not objects[tissue == 0].any()
    assert not objects[(tissue == GREY) & ~island].any() and not objects[(tissue == CSF) & ~cavity].any()


def test_the_midline_follows_the_affine_not_the_array_centre():
    tissue, affine, _, island, x = _synthetic_brain()
    shifted = affine.copy()
    shifted[0, 3] = -40.0  # world x = 0 now at voxel column 40
    objects = mni152_object_labels(tissue, shifted)
    assert np.array_equal(objects == OBJECT["deep_grey_left"], island & (x < 40))


def test_the_default_dataset_holds_the_five_targets_left_and_right_alike(tmp_path):
    from msa_hf.data import load_prepared, read_class_names

    report = build_mni152_objects_dataset(tmp_path / "objects")
    assert read_class_names(tmp_path / "objects") == MNI_OBJECT_CLASSES
    assert set(report.slices_per_class) == set(MNI_OBJECT_CLASSES.values())
    assert HELD_OUT_STRUCTURE not in ADAPTED_STRUCTURES and len(ADAPTED_STRUCTURES) >= 4
    areas: dict[str, int] = {name: 0 for name in MNI_OBJECT_CLASSES.values()}
    for split in load_prepared(tmp_path / "objects").values():
        for row in split:
            label = np.asarray(row["label"])
            for value, name in MNI_OBJECT_CLASSES.items():
                areas[name] += int((label == value).sum())
    for side in ("deep_grey", "white_matter"):  # the template is near-symmetric: so are its halves
        left, right = areas[f"{side}_left"], areas[f"{side}_right"]
        assert left > 0 and abs(left - right) / max(left, right) < 0.1, (side, left, right)
    assert 0 < areas["ventricles"] < areas["deep_grey_left"] + areas["deep_grey_right"]
