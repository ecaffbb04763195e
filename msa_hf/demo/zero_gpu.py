# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo on ZeroGPU hardware: a Hugging Face Space whose GPU is lent per call.

On ZeroGPU a Space's process holds no GPU. A function decorated with the `spaces` package's `spaces.GPU` runs,
at each call, in a worker process forked from the Space's process and lent a GPU for that call. Its arguments
and its result cross between the two processes by pickling; nothing else it changes comes back, and a later
call may run in another worker, forked afresh. Each call also counts against the visitor's daily GPU quota.

So the page keeps everything in the Space's process and lends the GPU only the image encoder, where the time
goes (about 99% of a click's FLOPs at 1024 px). `ZeroGpuPlacement.encode` sends the pictures (one upload's, or
a group of a volume's slices) to the worker, which encodes them with its own copy of the model on the GPU
under bfloat16 autocast and returns their embeddings. The Space's process keeps them, and every click is then
decoded from them on its CPU, as on a CPU Space, in milliseconds and without a GPU call. A volume's slices
are encoded `SLICES_PER_GPU_CALL` at a time, so that a propagation asks for a GPU a few times, not once a
slice.

The worker's model is the Space's as it was when the worker was forked, so each call names the task
adapter to encode with. The model is registered (`zero_gpu_placement`) before the page starts, so every
worker, forked later, holds it. ZeroGPU runs no `torch.compile`, and none is asked for here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from msa_hf.hub.task_adapters import task_adapter_names
from msa_hf.inference.placement import Placement, parse_dtype

# Slices of a volume encoded per GPU call: each call waits for a GPU to be lent, so a volume asks for few; 32
# ViT-B embeddings are 128 MB to send back
SLICES_PER_GPU_CALL = 32
# The most a GPU call may take, which ZeroGPU reserves for it from the visitor's quota (it stops a call that
# runs longer): a fixed part for a fresh worker (CUDA's start, the model's copy onto the GPU: ViT-H's is 2.5
# GB) and a part per picture. Bounds set generously, not measured.
GPU_SECONDS_PER_CALL = 30
GPU_SECONDS_PER_PICTURE = 0.5
GPU_DEVICE = "cuda"  # the worker's device (the tests run the same path with "cpu")

# the models the page serves, by id(): a forked worker finds them in its copy of this table
_SERVED: dict[int, Any] = {}
_encode_on_lent_gpu: Any = None  # `_encode_in_worker` decorated by `spaces.GPU` (`zero_gpu_placement`)


def running_on_zero_gpu() -> bool:
    """Whether this process is a Space on ZeroGPU hardware (the platform sets `SPACES_ZERO_GPU`)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


@dataclass(frozen=True)
class ZeroGpuPlacement(Placement):
    """Decode on this process's CPU (`device`, in float32), encode on a lent GPU in `gpu_dtype`."""

    gpu_dtype: torch.dtype = torch.bfloat16

    def encode(self, model: Any, pixel_values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """`model.get_image_embeddings(pixel_values)` in a ZeroGPU worker: `(B, 3, S, S) -> (B, C, h, w)`,
        float32, on this process's CPU.

        Raises:
            RuntimeError: `model` is not the one `zero_gpu_placement` registered.
        """
        if _SERVED.get(id(model)) is not model:
            raise RuntimeError(
                "this model was not registered for ZeroGPU: build its placement with zero_gpu_placement(model) "
                "before the page starts, so that the GPU workers hold it."
            )
        adapter = model.active_adapter if task_adapter_names(model) else None
        # numpy arrays cross as plain pickles; a tensor would cross as shared memory, handed over by the sender
        embeddings = _encode_on_lent_gpu(
            id(model), adapter, pixel_values.cpu().numpy(), kwargs, self.gpu_dtype
        )
        return torch.from_numpy(embeddings)

    @property
    def slices_per_encoding(self) -> int:
        return SLICES_PER_GPU_CALL


def _gpu_seconds(key: int, adapter: str | None, pixel_values: np.ndarray, *_: Any) -> int:
    """The duration a GPU call asks ZeroGPU for: `GPU_SECONDS_PER_CALL` and `GPU_SECONDS_PER_PICTURE` each."""
    return GPU_SECONDS_PER_CALL + math.ceil(len(pixel_values) * GPU_SECONDS_PER_PICTURE)


def _encode_in_worker(
    key: int, adapter: str | None, pixel_values: np.ndarray, options: dict[str, Any], dtype: torch.dtype
) -> np.ndarray:
    """In a ZeroGPU worker: the embeddings `(B, C, h, w)` of `pixel_values` `(B, 3, S, S)` by the served model
    `key` with task `adapter` active, on its GPU under `dtype` autocast, returned float32."""
    model = _SERVED[key]
    if adapter is not None and model.active_adapter != adapter:  # the Space's choice, made after the fork
        model.set_adapter(adapter)
    placement = Placement(torch.device(GPU_DEVICE), dtype)
    model.to(placement.device)  # this worker's copy; the Space's stays on its CPU
    with torch.inference_mode():  # the worker's own thread: grad mode does not carry over
        return placement.encode(model, torch.from_numpy(pixel_values), **options).cpu().numpy()


def zero_gpu_placement(model: Any, dtype: str | torch.dtype | None = None) -> ZeroGpuPlacement:
    """The demo's placement on ZeroGPU hardware for `model` (encoded on a lent GPU in `dtype`, default
    bfloat16; decoded on the CPU), registered so that the GPU workers hold it. Call before the page starts.

    Raises:
        ValueError: an unknown dtype.
        RuntimeError: the `spaces` package is missing.
    """
    global _encode_on_lent_gpu
    try:
        import spaces
    except ImportError as error:
        raise RuntimeError(
            "this Space runs on ZeroGPU hardware (SPACES_ZERO_GPU is set) but the `spaces` package is missing: "
            "add `spaces` to the Space's requirements.txt."
        ) from error
    gpu_dtype = parse_dtype(dtype) if dtype is not None else torch.bfloat16
    _SERVED[id(model)] = model.to("cpu").eval()
    if _encode_on_lent_gpu is None:
        _encode_on_lent_gpu = spaces.GPU(_encode_in_worker, duration=_gpu_seconds)
    return ZeroGpuPlacement(torch.device("cpu"), torch.float32, gpu_dtype)
