# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Timing (median and spread over repeats) and peak memory, on CPU or CUDA.

Peak memory on CUDA is `torch.cuda.max_memory_allocated`. On CPU it is the growth of the process's resident
high-water mark (`ru_maxrss`) from just before the model is built: weights, inputs, activations, gradients,
optimiser state and temporaries, without the Python/torch runtime. That is why every case runs in a fresh
process (`benchmarks.run` starts one per case).

The resident mark also holds what the C allocator keeps after tensors are freed and the per-thread buffers of
oneDNN/OpenMP (a few hundred MiB here, whatever the method), so on CPU the training cases also count what
CUDA's `max_memory_allocated` counts: the peak bytes of live tensor storage over one step
(`LiveTensorBytes`). The memory targets, which are about fitting a GPU, are judged on that.
"""

from __future__ import annotations

import resource
import statistics
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass
class Timing:
    """Seconds per call over `repeats` calls after `warmup` ones."""

    median: float
    low: float
    high: float
    repeats: int


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(function: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> Timing:
    """Run `function` `warmup` times, then time `repeats` calls (device-synchronised)."""
    for _ in range(warmup):
        function()
    synchronise(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronise(device)
        seconds.append(time.perf_counter() - start)
    return Timing(statistics.median(seconds), min(seconds), max(seconds), repeats)


class PeakMemory:
    """Peak bytes allocated between `start()` and `peak_bytes()` (see the module docstring for CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._start = 0

    @staticmethod
    def _resident_high_water() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = 0
        else:
            self._start = self._resident_high_water()

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return max(self._resident_high_water() - self._start, 0)


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of live CPU tensor storage while the mode is active, and their peak: what CUDA's
    `max_memory_allocated` counts, for CPU runs.

    `alive`: tensors that exist when the mode starts (weights, optimiser state, inputs); their storages count
    from the start. Every storage an op creates inside the mode counts until it is freed. Views share their
    base's storage and count once.
    """

    def __init__(self, alive: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._bytes: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        for tensor in alive:
            self._count(tensor)
        self.peak = self.current

    def _forget(self, address: int) -> None:
        self.current -= self._bytes.pop(address, 0)

    def _count(self, tensor: torch.Tensor) -> None:
        if tensor.device.type != "cpu":
            return
        storage = tensor.untyped_storage()
        address, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or address in self._bytes:
            return
        self._bytes[address] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        # torch keeps one Python storage object per storage, so this runs when the memory is released
        weakref.finalize(storage, self._forget, address)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._count(value)
        return out
