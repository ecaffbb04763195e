# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Where and in what precision inference runs: `--device` and `--dtype` of every entry point.

Default: the first CUDA GPU when there is one, with the image encoder under bfloat16 autocast; else the
CPU in float32. The image encoder is where the time goes (about 99% of a click's FLOPs at 1024 px), so only
it runs under autocast; its embedding is returned in float32 and the prompt encoder and mask decoder run in
float32, so the interactive decode is the same on every device and dtype. (`evaluate_volumes` is the
exception: it runs each depth window's whole forward under the autocast, prompts included.)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class Placement:
    """A device and the encoder's compute dtype (float32: no autocast)."""

    device: torch.device
    dtype: torch.dtype

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to `dtype` on `device` (nothing for float32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def encode(self, model, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """`model.get_image_embeddings(pixel_values)` on this device under autocast, in float32:
        `(B, 3, S, S) -> (B, C, h, w)`."""
        with self.autocast():
            embeddings = model.get_image_embeddings(pixel_values.to(self.device), **kwargs)
        return embeddings.float()


def resolve_placement(
    device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> Placement:
    """`Placement` from command-line style values: `device` "cuda", "cuda:1", "cpu" (default: CUDA when
    available), `dtype` "bfloat16"/"bf16", "float16"/"fp16", "float32"/"fp32" (default: bfloat16 on CUDA,
    float32 elsewhere).

    Raises:
        ValueError: an unknown device or dtype, CUDA asked for where there is none, or float16 on the CPU.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device {device!r}: {error}; use cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: this Python's torch sees no CUDA GPU; use --device cpu.")
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: use one of {sorted(DTYPES)}.")
        dtype = DTYPES[dtype]
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("dtype float16 on the CPU: use bfloat16 or float32.")
    return Placement(device, dtype)
