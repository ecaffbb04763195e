# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Unlabelled images for encoder pretraining: a prepared dataset (labels ignored), a folder of PNG/JPEG/TIFF/
DICOM images, or volume files (NIfTI, NRRD, MetaImage: every axial slice), as SAM inputs `(3, S, S)`.

The paper pretrains on RadImageNet, EyePACS, BCN-20000 and HAM-10000; each is a folder of images, so
`msa-hf pretrain-encoder <folder> ...` takes them as downloaded (docs/encoder-pretraining-and-text.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_hf.inference.image_encoding import image_to_pixel_values


def _axial_slice_count(path: Path) -> int:
    """Axial slices of a volume file, from its header (the voxels are read only when a slice is used)."""
    import nibabel as nib

    from msa_hf.data.volumes import axial_slices, load_volume, volume_file_header

    affine, shape = volume_file_header(path)
    if len(shape) != 3:  # let the reader say what is wrong (4-D without a channel, ...)
        return len(axial_slices(load_volume(path).array))
    return shape[["S" in code or "I" in code for code in nib.aff2axcodes(affine)].index(True)]


class UnlabelledImages(torch.utils.data.Dataset):
    """Item `i` -> `(3, S, S)` SAM-normalised pixels; files are read on access (nothing is held in memory)."""

    def __init__(self, source: str | Path, image_size: int) -> None:
        from msa_hf.data.image_files import IMAGE_SUFFIXES, is_dicom_file
        from msa_hf.data.volumes import is_volume_file

        self.image_size = image_size
        self.items: list[tuple[str, Any]] = []
        source = Path(source)
        if (source / "classes.json").is_file():  # a prepared dataset: every split, labels unused
            from msa_hf.data.prepare import load_prepared

            self._rows = load_prepared(source)
            for split in self._rows:
                self.items += [("row", (split, index)) for index in range(len(self._rows[split]))]
        elif source.is_dir():
            for file in sorted(p for p in source.rglob("*") if p.is_file()):
                if file.suffix.lower() in IMAGE_SUFFIXES or (
                    not is_volume_file(file) and is_dicom_file(file)
                ):
                    self.items.append(("image", str(file)))
                elif is_volume_file(file):
                    count = _axial_slice_count(file)
                    self.items += [("slice", (str(file), index)) for index in range(count)]
        if not self.items:
            raise ValueError(
                f"{source}: no images found. Pass a prepared dataset (msa-hf prepare), or a folder of PNG, JPEG, "
                "TIFF or DICOM images or volume files (NIfTI, NRRD, MetaImage)."
            )
        self._volume: tuple[str, np.ndarray, str] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _picture(self, index: int) -> tuple[np.ndarray, str]:
        kind, where = self.items[index]
        if kind == "row":
            split, row = where
            example = self._rows[split][row]
            return np.asarray(example["image"]), str(example.get("modality") or "other")
        if kind == "image":
            from msa_hf.data.image_files import is_dicom_file, read_dicom_image, read_image

            return read_dicom_image(where) if is_dicom_file(where) else (read_image(where), "other")
        path, slice_index = where
        if self._volume is None or self._volume[0] != path:  # consecutive slices share one read
            from msa_hf.data.volumes import axial_slices, guess_modality, load_volume

            volume = load_volume(path)
            modality = guess_modality(volume)
            self._volume = (path, axial_slices(volume.array), modality)
        return self._volume[1][slice_index], self._volume[2]

    def __getitem__(self, index: int) -> torch.Tensor:
        picture, modality = self._picture(index)
        try:
            return image_to_pixel_values(picture, self.image_size, modality)
        except ValueError as error:  # name the file (and slice) the picture came from
            raise ValueError(f"{self.items[index][1]}: {error}") from error


class StreamedImages(torch.utils.data.IterableDataset):
    """A prepared dataset read as a stream (every split, labels unused): nothing is listed or held up front.

    Rows are shuffled within a `buffer_size` window (seeded) and, under several processes, split between them
    (`datasets.distributed.split_dataset_by_node`), so each process sees its own share. The order is a function
    of the seed, so a resumed run skips exactly the images it had consumed.
    """

    def __init__(
        self,
        source: str | Path,
        image_size: int,
        seed: int = 0,
        buffer_size: int = 1000,
        process_index: int = 0,
        num_processes: int = 1,
    ) -> None:
        if not (Path(source) / "classes.json").is_file():
            raise ValueError(
                f"{source}: streaming reads prepared datasets (msa-hf prepare); pass a folder without --streaming."
            )
        self.source, self.image_size, self.seed, self.buffer_size = (
            Path(source),
            image_size,
            seed,
            buffer_size,
        )
        self.process_index, self.num_processes = process_index, num_processes

    def rows(self, epoch: int = 0):
        from datasets import concatenate_datasets
        from datasets.distributed import split_dataset_by_node

        from msa_hf.data.prepare import load_prepared

        splits = load_prepared(self.source, streaming=True)
        stream = concatenate_datasets([splits[name] for name in splits])
        stream = stream.shuffle(seed=self.seed + epoch, buffer_size=self.buffer_size)
        return split_dataset_by_node(stream, rank=self.process_index, world_size=self.num_processes)

    def __iter__(self):
        epoch = 0
        while True:  # endless: epochs follow one another, each in its own shuffled order
            empty = True
            for row in self.rows(epoch):
                empty = False
                yield image_to_pixel_values(
                    np.asarray(row["image"]), self.image_size, str(row.get("modality") or "other")
                )
            if empty:
                raise ValueError(f"{self.source}: the stream holds no images.")
            epoch += 1
