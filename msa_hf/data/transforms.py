# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Medical preprocessing as named transforms (MONAI's shape: an array transform plus `OnKeys`, its
dictionary wrapper). Every transform takes a numpy array or a torch tensor and returns the same type.

Intensity: `WindowIntensity` (CT, presets or explicit HU), `PercentileNormalize` (MRI), `ScaleIntensity`
(a fixed range, e.g. 8-/16-bit photos). Geometry: `resample_to_spacing` (volumes), `GrayscaleToRGB`,
`resize_and_pad` (SamProcessor's math, masks kept exact), `RandomSpatialAugment` and `IntensityJitter`
for training. `SamNormalize` applies SAM's pixel mean/std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from msa_hf.processing.prompts import resized_shape

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# (level, width) in Hounsfield units. Abdomen/lung/bone/brain are the usual radiology soft-tissue,
# lung, bone and brain windows; `liver` and `mediastinum` are common extras.
CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "mediastinum": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


def check_ct_window(window: str | tuple[float, float] | None) -> None:
    """Refuses a CT window that is neither `None`, a key of `CT_WINDOW_PRESETS`, nor `(low, high)` HU with
    low < high, naming the choices (used by every configuration that takes one, before any work)."""
    if window is None:
        return
    if isinstance(window, str):
        if window not in CT_WINDOW_PRESETS:
            raise ValueError(
                f"window={window!r}: use one of {sorted(CT_WINDOW_PRESETS)} (or leave it unset)."
            )
        return
    if not (len(window) == 2 and window[0] < window[1]):
        raise ValueError(f"window={window!r}: give (low, high) in HU with low < high.")


# SAM's pixel statistics (ImageNet), on a [0, 1] scale; equal to SamImageProcessor's defaults (tested).
SAM_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM_PIXEL_STD = (0.229, 0.224, 0.225)


def _to_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array
    return torch.from_numpy(np.ascontiguousarray(array))


def _like(result: torch.Tensor, reference: ArrayT) -> ArrayT:
    if isinstance(reference, torch.Tensor):
        return result
    return result.numpy()


def check_finite(array: np.ndarray | torch.Tensor, name: str) -> None:
    """Raise a `ValueError` naming `name` when `array` holds NaN or Inf (they poison every normalisation)."""
    tensor = _to_tensor(array)
    if tensor.is_floating_point():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(
                f"{name}: {bad} NaN/Inf values out of {tensor.numel()}. Fix or mask them in the file "
                "(e.g. numpy.nan_to_num with the background value) before preparing the dataset."
            )


@dataclass
class WindowIntensity:
    """CT windowing: clip to `[level - width/2, level + width/2]` HU and scale to [0, 1].

    Give `preset` (a key of `CT_WINDOW_PRESETS`), `level` + `width`, or `hu_range=(low, high)`.
    """

    preset: str | None = None
    level: float | None = None
    width: float | None = None
    hu_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.preset, self.hu_range)) + (self.level is not None)
        if given != 1 or (self.level is None) != (self.width is None):
            raise ValueError("WindowIntensity: give exactly one of preset, (level, width) or hu_range.")
        if self.preset is not None:
            if self.preset not in CT_WINDOW_PRESETS:
                raise ValueError(
                    f"unknown CT window preset {self.preset!r}; choose one of {sorted(CT_WINDOW_PRESETS)} "
                    "or pass hu_range=(low, high)."
                )
            self.level, self.width = CT_WINDOW_PRESETS[self.preset]
        if self.hu_range is not None:
            low, high = self.hu_range
            self.level, self.width = (low + high) / 2, high - low
        if self.width <= 0:
            raise ValueError(f"WindowIntensity: width must be positive, got {self.width}.")

    @property
    def bounds(self) -> tuple[float, float]:
        return self.level - self.width / 2, self.level + self.width / 2

    def __call__(self, image: ArrayT) -> ArrayT:
        low, high = self.bounds
        tensor = _to_tensor(image).to(torch.float32)
        return _like(((tensor - low) / (high - low)).clamp(0.0, 1.0), image)


@dataclass
class PercentileNormalize:
    """MRI normalisation: map the `lower`/`upper` percentiles to 0/1 and clip.

    `nonzero=True` computes the percentiles over non-zero voxels only, so a large zero background (skull
    stripped MRI) does not pull the lower percentile to 0.
    """

    lower: float = 0.5
    upper: float = 99.5
    nonzero: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.lower < self.upper <= 100:
            raise ValueError(
                f"PercentileNormalize: need 0 <= lower < upper <= 100, got {self.lower}, {self.upper}."
            )

    def __call__(self, image: ArrayT) -> ArrayT:
        values = _to_tensor(image).to(torch.float64)
        sample = values[values != 0] if self.nonzero else values.reshape(-1)
        if sample.numel() == 0:
            return _like(torch.zeros_like(values, dtype=torch.float32), image)
        sample = sample.numpy() if sample.device.type == "cpu" else sample.cpu().numpy()
        low, high = np.percentile(sample, [self.lower, self.upper])
        scaled = (values - low) / max(high - low, 1e-12)
        return _like(scaled.clamp(0.0, 1.0).to(torch.float32), image)


@dataclass
class ScaleIntensity:
    """Scale a fixed range `[minimum, maximum]` to [0, 1] (e.g. 255 for 8-bit, 65535 for 16-bit)."""

    minimum: float = 0.0
    maximum: float = 255.0

    def __call__(self, image: ArrayT) -> ArrayT:
        tensor = _to_tensor(image).to(torch.float32)
        return _like(((tensor - self.minimum) / (self.maximum - self.minimum)).clamp(0.0, 1.0), image)


def intensity_transform_for(
    modality: str, dtype: np.dtype | str | None = None, window: str | tuple[float, float] | None = None
) -> Callable[[ArrayT], ArrayT]:
    """The default intensity transform for a modality: CT -> window (`abdomen` unless given), MR ->
    percentile normalisation, anything else -> 8-bit pictures by /255, and 16-bit or float images by their
    own range (minimum -> 0, maximum -> 1): a 16-bit scan rarely spans 0-65535, and dividing by 65535 would
    leave it nearly black. Training, evaluation, prediction and the demo all take this one rule."""
    if window is not None:
        return (
            WindowIntensity(hu_range=window) if isinstance(window, tuple) else WindowIntensity(preset=window)
        )
    modality = modality.upper()
    if modality == "CT":
        return WindowIntensity(preset="abdomen")
    if modality in ("MR", "MRI"):
        return PercentileNormalize()
    dtype = np.dtype(dtype) if dtype is not None else None
    if dtype == np.uint8:
        return ScaleIntensity(0, 255)
    return PercentileNormalize(lower=0.0, upper=100.0, nonzero=False)


class GrayscaleToRGB:
    """`(H, W)`, `(1, H, W)`, `(H, W, 3)` or `(3, H, W)` -> `(3, H, W)` (channels first, as SAM wants)."""

    def __call__(self, image: ArrayT) -> ArrayT:
        tensor = _to_tensor(image)
        if tensor.ndim == 2:
            tensor = tensor.unsqueeze(0)
        elif tensor.ndim == 3 and tensor.shape[-1] in (3, 4) and tensor.shape[0] not in (1, 3):
            tensor = tensor[..., :3].permute(2, 0, 1)
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
            raise ValueError(
                f"GrayscaleToRGB: expected (H,W), (1,H,W), (H,W,3) or (3,H,W); got {tuple(tensor.shape)}."
            )
        return _like(tensor.expand(3, -1, -1).contiguous(), image)


@dataclass
class SamNormalize:
    """`(3, H, W)` or `(B, 3, H, W)` in [0, 1] -> SAM's normalised pixels `(x - mean) / std`."""

    mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    std: tuple[float, float, float] = SAM_PIXEL_STD

    def __call__(self, image: ArrayT) -> ArrayT:
        tensor = _to_tensor(image).to(torch.float32)
        mean = torch.tensor(self.mean, device=tensor.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=tensor.device).view(3, 1, 1)
        return _like((tensor - mean) / std, image)


def resize_and_pad(
    image: torch.Tensor, mask: torch.Tensor | None, image_size: int, pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SamProcessor's geometry: resize the longest side to `image_size`, pad bottom/right to a square.

    Args:
        image: `(C, H, W)` float.
        mask: `(H, W)` or `(K, H, W)` integer/boolean labels, or None. Resized with nearest neighbour,
            so labels stay exactly the values they were (a binary mask stays binary).
    Returns:
        `(C, image_size, image_size)` image and `(…, image_size, image_size)` mask (padding is 0).
    """
    height, width = image.shape[-2:]
    new_height, new_width = resized_shape((height, width), image_size)
    resized = F.interpolate(
        image[None].float(),
        size=(new_height, new_width),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0]
    padded = F.pad(resized, (0, image_size - new_width, 0, image_size - new_height), value=pad_value)
    if mask is None:
        return padded, None
    squeeze = mask.ndim == 2
    labels = mask[None] if squeeze else mask
    # nearest-exact samples pixel centres, so a pixel maps to where `to_model_frame` sends its centre.
    resized_mask = F.interpolate(labels[None].float(), size=(new_height, new_width), mode="nearest-exact")[0]
    resized_mask = F.pad(resized_mask, (0, image_size - new_width, 0, image_size - new_height)).to(mask.dtype)
    return padded, resized_mask[0] if squeeze else resized_mask


def covering_mask(mask: torch.Tensor, image_size: int) -> torch.Tensor:
    """`(H, W)` binary mask -> `(image_size, image_size)` uint8 in `resize_and_pad`'s frame, a pixel set where the
    mask covers any part of it (an area resize kept above 0), where `resize_and_pad`'s nearest neighbour keeps
    only the pixels whose centres it covers: a structure thinner than a model pixel keeps its place."""
    height, width = resized_shape(tuple(mask.shape[-2:]), image_size)
    area = F.interpolate(mask[None, None].float(), size=(height, width), mode="area")[0, 0]
    return F.pad((area > 0).to(torch.uint8), (0, image_size - width, 0, image_size - height))


def resample_to_spacing(
    volume: ArrayT, spacing: Iterable[float], target_spacing: Iterable[float], is_label: bool = False
) -> ArrayT:
    """Resample a 3-D `volume` from voxel `spacing` to `target_spacing` (same axis order, millimetres).

    Images use trilinear interpolation; label maps (`is_label=True`) use nearest neighbour so their values
    stay exact. The output shape is `round(shape * spacing / target_spacing)`.
    """
    spacing, target_spacing = list(map(float, spacing)), list(map(float, target_spacing))
    tensor = _to_tensor(volume)
    if tensor.ndim != 3 or len(spacing) != 3 or len(target_spacing) != 3:
        raise ValueError(f"resample_to_spacing: need a 3-D volume and 3 spacings; got {tuple(tensor.shape)}.")
    if min(target_spacing) <= 0:
        raise ValueError(f"resample_to_spacing: target spacing must be positive, got {target_spacing}.")
    size = [max(1, round(n * s / t)) for n, s, t in zip(tensor.shape, spacing, target_spacing, strict=True)]
    from msa_hf.data.size_limits import check_voxel_count

    check_voxel_count(size, f"resampling {tuple(tensor.shape)} at {spacing} mm to {target_spacing} mm")
    if is_label:
        out = F.interpolate(tensor[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(
            tensor.dtype
        )
    else:
        out = F.interpolate(tensor[None, None].float(), size=size, mode="trilinear", align_corners=False)[
            0, 0
        ]
    return _like(out, volume)


@dataclass
class RandomSpatialAugment:
    """Training augmentation applied identically to image and mask: flips, a small rotation and a scale.

    `image` is `(C, H, W)` float, `mask` `(H, W)` or `(K, H, W)` labels; the mask is resampled with
    nearest neighbour so it stays binary. Out-of-frame pixels become 0 (image) and background (mask).
    """

    horizontal_flip_prob: float = 0.5
    vertical_flip_prob: float = 0.0
    max_rotation_degrees: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        flip_x = -1.0 if uniform(0, 1) < self.horizontal_flip_prob else 1.0
        flip_y = -1.0 if uniform(0, 1) < self.vertical_flip_prob else 1.0
        angle = math.radians(uniform(-self.max_rotation_degrees, self.max_rotation_degrees))
        scale = uniform(*self.scale_range)
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        # affine_grid maps output to input coordinates in [-1, 1]; flips act on the input side.
        theta = torch.tensor([[cos * flip_x, -sin * flip_x, 0.0], [sin * flip_y, cos * flip_y, 0.0]])
        squeeze = mask.ndim == 2
        labels = (mask[None] if squeeze else mask).float()
        grid = F.affine_grid(theta[None], [1, 1, *image.shape[-2:]], align_corners=False)
        image_out = F.grid_sample(image[None].float(), grid, mode="bilinear", align_corners=False)[0]
        mask_out = F.grid_sample(labels[None], grid, mode="nearest", align_corners=False)[0].to(mask.dtype)
        return image_out, mask_out[0] if squeeze else mask_out


@dataclass
class IntensityJitter:
    """Brightness, contrast and gamma jitter on a [0, 1] image (the mask is untouched)."""

    brightness: float = 0.1
    contrast: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        gamma = math.exp(uniform(math.log(self.gamma[0]), math.log(self.gamma[1])))
        image = image.clamp(0, 1) ** gamma
        mean = image.mean()
        image = (image - mean) * (1 + uniform(-self.contrast, self.contrast)) + mean
        return (image + uniform(-self.brightness, self.brightness)).clamp(0, 1)


@dataclass
class OnKeys:
    """Dictionary wrapper: apply an array transform to `keys` of a sample dict (MONAI's `...d` idea)."""

    transform: Callable[[Any], Any]
    keys: tuple[str, ...] = ("image",)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for key in self.keys:
            if key not in out:
                raise KeyError(
                    f"OnKeys({type(self.transform).__name__}): sample has no key {key!r}; has {list(out)}."
                )
            out[key] = self.transform(out[key])
        return out
