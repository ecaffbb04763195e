# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Keeping freed memory in the process on CPU, for interactive decoding.

PyTorch has no caching allocator on CPU: every tensor comes from `malloc`. glibc serves large blocks
(above ~128 KB-32 MB, adjusted at run time) with a fresh `mmap` and gives them back on `free`, so each click's
multi-megabyte intermediates (the upscaled mask features are 8 MB at 1024 px) are page-faulted in again on
every call. Measured with the ViT-B decoder at 1024 px on these 2-core CPUs: one click with
`ClickDecoder` took 29 ms before and 18 ms after `keep_freed_memory()`; transformers' decoder took 46 and
35-38 ms. The cost is that the process keeps the memory it freed (up to its own peak) instead of returning it.

This changes process-wide allocator settings, so nothing calls it on import: the demo Space and
`msa-hf predict` call it once at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# blocks up to 1 GiB come from the heap and stay there after `free`; 256 MiB of headroom per heap growth
_KEEP_BYTES = 1 << 30
_TOP_PAD_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap and not hand freed memory back to the OS.

    Returns:
        True when the settings were applied (Linux with glibc), False elsewhere (nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # musl and other C libraries without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, _KEEP_BYTES),
        (_M_TRIM_THRESHOLD, _KEEP_BYTES),
        (_M_TOP_PAD, _TOP_PAD_BYTES),
    )
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)


__all__ = ["keep_freed_memory"]
