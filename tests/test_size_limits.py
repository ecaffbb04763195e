"""Sizes are checked from headers before anything is allocated: NIfTI bombs, truncated files, resampling
grids and huge images are refused by name, within a memory bound."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from msa_hf.data.image_files import ImageReadError, read_image, read_mask
from msa_hf.data.size_limits import InputTooLargeError
from msa_hf.data.transforms import resample_to_spacing
from msa_hf.data.volumes import VolumeReadError, load_nifti

nib = pytest.importorskip("nibabel")


def header_only_nifti(path, shape, dtype=np.int16, compress=True) -> None:
    """A NIfTI whose header claims `shape` but whose file holds (almost) no voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 64
    path.write_bytes(gzip.compress(raw) if compress else raw)


def peak_megabytes(call) -> float:
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


@pytest.mark.parametrize(
    ("name", "shape", "compress", "message"),
    [
        ("bomb.nii.gz", (1200, 1200, 1200), True, "over the limit of 600,000,000"),
        ("small-bomb.nii.gz", (400, 400, 300), True, "cannot decompress to that much"),
        ("truncated.nii", (100, 100, 100), False, "does not hold that much"),
    ],
)
def test_nifti_headers_are_checked_before_reading(tmp_path, name, shape, compress, message):
    header_only_nifti(tmp_path / name, shape, compress=compress)

    def load():
        with pytest.raises(VolumeReadError, match=message) as error:
            load_nifti(tmp_path / name)
        assert name in str(error.value)

    assert peak_megabytes(load) < 20  # nothing near the declared size was allocated


def test_the_voxel_limit_is_configurable(tmp_path, monkeypatch):
    header_only_nifti(tmp_path / "bomb.nii.gz", (1200, 1200, 1200))
    monkeypatch.setenv("MSA_HF_MAX_VOXELS", str(2_000_000_000))
    with pytest.raises(VolumeReadError, match="cannot decompress"):  # still not what the file can hold
        load_nifti(tmp_path / "bomb.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10), np.int16), np.eye(4)), tmp_path / "fine.nii.gz")
    monkeypatch.setenv("MSA_HF_MAX_VOXELS", "1000")
    with pytest.raises(VolumeReadError, match="4,000 voxels, over the limit of 1,000.*MSA_HF_MAX_VOXELS"):
        load_nifti(tmp_path / "fine.nii.gz")
    monkeypatch.setenv("MSA_HF_MAX_VOXELS", "lots")
    with pytest.raises(ValueError, match="MSA_HF_MAX_VOXELS='lots'"):
        load_nifti(tmp_path / "fine.nii.gz")
    monkeypatch.delenv("MSA_HF_MAX_VOXELS")
    assert load_nifti(tmp_path / "fine.nii.gz").array.shape == (20, 20, 10)


def test_resampling_refuses_a_grid_beyond_the_limit():
    volume = np.zeros((10, 10, 10), np.float32)

    def resample():
        with pytest.raises(InputTooLargeError, match="resampling .* over the limit"):
            resample_to_spacing(volume, (1.0, 1.0, 1.0), (0.01, 0.01, 0.01))

    assert peak_megabytes(resample) < 20
    assert resample_to_spacing(volume, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)).shape == (5, 5, 5)


def test_images_over_the_pixel_limit_are_refused_from_their_header(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(tmp_path / "slice.png")
    monkeypatch.setenv("MSA_HF_MAX_PIXELS", "1000")
    for reader in (read_image, read_mask):
        with pytest.raises(
            ImageReadError, match=r"slice.png: 80 x 60 pixels \(4,800\) is over the limit of 1,000"
        ):
            reader(tmp_path / "slice.png")
    monkeypatch.delenv("MSA_HF_MAX_PIXELS")
    assert read_image(tmp_path / "slice.png").shape == (60, 80)
