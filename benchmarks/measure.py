# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Timing (median and spread over repeats) and peak memory, on CPU or CUDA.

Peak memory on CUDA is `torch.cuda.max_memory_allocated`. On CPU it is the growth of the process's resident
high-water mark (`ru_maxrss`) from just before the model is built: weights, inputs, activations, gradients,
optimiser state and temporaries, without the Python/torch runtime. That is why every case runs in a fresh
process (`benchmarks.run` starts one per case).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


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
