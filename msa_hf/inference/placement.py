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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

    @property
    def slices_per_encoding(self) -> int:
        """Slices of a volume encoded per encoder call where the caller asks for no number: 8 on a GPU, where a
        batch costs little more than one slice, and 1 on the CPU, where each slice costs its own time (a
        volume's slices are encoded as they are first asked for, and a propagation that stops early would
        have paid for slices it never reads)."""
        return 8 if self.device.type == "cuda" else 1


def native_bfloat16_cpu() -> bool:
    """Whether this CPU computes bfloat16 in hardware (Intel AMX tiles, or AVX512-BF16). There bfloat16
    autocast encodes about 2.3x faster than float32 (ViT-B at 1024 px: 6.0 -> 2.6 s an image on 2 cores,
    `benchmarks/results/cpu-precision.md`); elsewhere bfloat16 is emulated and slower than float32, which is
    why float32 stays the CPU's default."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except RuntimeError:  # a torch build without the CPU capability probes
        return False


# bfloat16 autocast pays on such a CPU for encoders as wide as SAM's ViT-B and wider (0.42-0.45x the time at
# 256 and 1024 px); a small encoder, the shipped base's, runs slower in it (2.4x the time at 64 px): its
# products are too small for the bfloat16 units to repay the casts (`benchmarks/results/cpu-precision.md`)
BFLOAT16_PAYS_FROM_WIDTH = 768


def cpu_precision_tip(
    device: str | torch.device | None, dtype: str | torch.dtype | None, model: Any = None
) -> str | None:
    """What a command says where it encodes `model` on a CPU in float32 by default although that CPU computes
    bfloat16 natively (`native_bfloat16_cpu`) and the encoder is wide enough for it to pay
    (`BFLOAT16_PAYS_FROM_WIDTH`): that `--dtype bfloat16` is about twice as fast there. None otherwise (a
    dtype chosen, a GPU, a CPU without bfloat16 hardware, a small encoder)."""
    vision = getattr(getattr(model, "config", None), "vision_config", None)
    width = getattr(vision, "hidden_size", None)
    if width is None or width < BFLOAT16_PAYS_FROM_WIDTH:
        return None
    if dtype is not None or resolve_placement(device).device.type != "cpu" or not native_bfloat16_cpu():
        return None
    return (
        "this CPU computes bfloat16 in hardware: --dtype bfloat16 encodes images about 2x faster here, with "
        "masks within bfloat16's tolerance of float32's (the default)."
    )


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype, or one as `--dtype` spells it: "bfloat16"/"bf16", "float16"/"fp16", "float32"/"fp32".

    Raises:
        ValueError: another name.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: use one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


def resolve_placement(
    device: str | torch.device | Placement | None = None, dtype: str | torch.dtype | None = None
) -> Placement:
    """`Placement` from command-line style values: `device` "cuda", "cuda:1", "cpu" (default: CUDA when
    available), `dtype` "bfloat16"/"bf16", "float16"/"fp16", "float32"/"fp32" (default: bfloat16 on CUDA,
    float32 elsewhere). A `Placement` as `device` (one chosen already, such as the demo's on ZeroGPU
    hardware: `msa_hf.demo.zero_gpu`) is returned as it is.

    Raises:
        ValueError: an unknown device or dtype, a device this machine or this torch lacks (CUDA where there
            is none, a GPU number beyond its GPUs, Apple's mps on another machine), float16 on the CPU, or a
            dtype beside a `Placement` (which has its own).
    """
    if isinstance(device, Placement):
        if dtype is not None:
            raise ValueError(
                f"dtype {dtype!r} beside {device}: a placement has its own dtype; give one of them."
            )
        return device
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device {device!r}: {error}; use cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: this Python's torch sees no CUDA GPU; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(
            f"device {device}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} (cuda:0 to "
            f"cuda:{count - 1}); use one of them."
        )
    if device.type not in ("cpu", "cuda"):
        # another accelerator (mps, xpu, ...): only where this torch has it; the model moves there unchanged
        backend = getattr(torch, device.type, None) or getattr(torch.backends, device.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(
                f"device {device}: this Python's torch cannot use it (not built with it, or no such device "
                "here); use --device cpu, or cuda for an NVIDIA GPU."
            )
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = parse_dtype(dtype)
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("dtype float16 on the CPU: use bfloat16 or float32.")
    return Placement(device, dtype)


# torch.compile of the image encoder pays for itself from about this many encoded images on a GPU: measured on
# an NVIDIA H200 (ViT-B, 1024 px, bf16, batch 8) the compilation takes 29 s and then saves 3.9 ms per image
# (62.6 -> 31.4 ms per batch of 8), so it is repaid after ~7,400 images; on the CPU it saves 15% at 256 px
# after a compilation of minutes, so it is never on by default there
COMPILE_PAYS_FROM_IMAGES = 8000


# torch.compile of transformers' SAM image encoder (stock or ours) fails while dynamo traces it on torch 2.6
# and older: a NameError inside transformers' output-capturing wrapper (seen on torch 2.5.1 and 2.6.0 with
# transformers 5.17 and 5.25); from torch 2.7 the encoder compiles, as one graph
COMPILE_NEEDS_TORCH = "2.7"


def torch_is_at_least(version: str) -> bool:
    """Whether the running torch is `version` (e.g. `"2.7"`) or newer, whatever its local build tag (`+cpu`)."""
    from packaging.version import Version

    return Version(Version(torch.__version__).base_version) >= Version(version)


def torch_compiles_sam() -> bool:
    """Whether this torch can `torch.compile` the SAM image encoder (torch `COMPILE_NEEDS_TORCH` or newer)."""
    return torch_is_at_least(COMPILE_NEEDS_TORCH)


def check_torch_compiles_sam(option: str) -> None:
    """Refuse a compilation the user asked for (`option` names how they asked) on a torch that cannot do it.

    Raises:
        ValueError: torch older than `COMPILE_NEEDS_TORCH`.
    """
    if not torch_compiles_sam():
        raise ValueError(
            f"{option}: torch.compile of the SAM image encoder needs torch {COMPILE_NEEDS_TORCH} or newer; this is "
            f"torch {torch.__version__}, on which it fails while tracing. Upgrade torch, or run without it "
            "(the results are the same, only slower on a GPU)."
        )


def compile_by_default(requested: bool | None, placement: Placement, count_images: Callable[[], int]) -> bool:
    """Whether to `torch.compile` the image encoder: `requested` when the user said (True / False), else on
    a GPU for a job that encodes at least `COMPILE_PAYS_FROM_IMAGES` images (slices count one each), where
    this torch can (`torch_compiles_sam`). `count_images` is called only then (counting a batch job's inputs
    reads every header).

    Where it would pay but this torch cannot, says so on stderr (the job runs, slower). A request (True) on
    such a torch is refused where the compiling happens, `compile_image_encoder`, which every caller reaches
    before it encodes anything.
    """
    if requested is not None:
        return requested
    if placement.device.type != "cuda" or count_images() < COMPILE_PAYS_FROM_IMAGES:
        return False
    if not torch_compiles_sam():
        import sys

        print(
            f"the image encoder runs uncompiled: torch.compile of it needs torch {COMPILE_NEEDS_TORCH} or newer "
            f"(this is torch {torch.__version__}); over a job this size it would halve the encoder's time.",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def compile_toolchain_failure(error: BaseException) -> str | None:
    """Why a compilation failed, where the cause is this machine's build tools rather than the model: the
    compiler's first error line, or the tool that is missing; None for any other failure (a model that does
    not trace is a bug to see, not to hide).

    Inductor builds its kernels when a compiled module is first called: CPU kernels with the machine's C++
    compiler, GPU kernels through Triton, whose launcher is C; both need this Python's development headers
    (`Python.h`), which a distribution's Python often lacks until its `-dev` package is installed.
    """
    import subprocess

    from torch._inductor import exc

    # no compiler, or no Triton for a GPU (TritonMissing: torch 2.6 and newer)
    missing_tool = (
        exc.InvalidCxxCompiler,
        *(getattr(exc, name) for name in ("TritonMissing",) if hasattr(exc, name)),
    )
    chain, seen = [], error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = getattr(seen, "inner_exception", None) or seen.__cause__ or seen.__context__
    for cause in chain:
        if isinstance(cause, exc.CppCompileError):  # the compiler ran and failed (CUDACompileError too)
            errors = [line.strip() for line in str(cause.output).splitlines() if "error" in line.lower()]
            return (errors[0] if errors else "the C++ compiler failed")[:300]
        if isinstance(cause, missing_tool):
            return str(cause).strip().splitlines()[0][:300]
        if isinstance(cause, subprocess.CalledProcessError):  # Triton building its launcher with gcc
            return f"{cause.cmd[0] if isinstance(cause.cmd, list | tuple) else cause.cmd} failed"[:300]
    for cause in chain:  # a failure that says what it lacked, however it was raised
        if "Python.h" in str(cause):
            return str(cause).strip().splitlines()[0][:300]
    return None


def uncompiled_note(what: str, reason: str) -> str:
    """What to print where `what` runs uncompiled because this machine cannot build kernels: why, and how to
    make it compile."""
    import sys

    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"torch.compile could not build {what}'s kernels on this machine ({reason}); {what} runs uncompiled, "
        f"with the same results, slower. To compile it, install a C++ compiler and this Python's development "
        f"headers (Debian, Ubuntu: apt install g++ {python}-dev), or turn compiling off (--no-compile)."
    )


def compile_in_place(module: torch.nn.Module, what: str) -> None:
    """`torch.compile` `module` in place (parameter names and `save_pretrained` unchanged). Its first call
    compiles: that call says on stderr how long the compilation took, or, where this machine cannot build the
    kernels (`compile_toolchain_failure`), says why and runs `module` uncompiled from then on (the results
    are the same; only a GPU is much slower). `what` names the module in those lines ("the image encoder").
    """
    import sys
    import time

    if getattr(module, "_compiled_call_impl", None) is not None:  # compiled already (an earlier predictor)
        return
    module.compile()
    compiled = getattr(module, "_compiled_call_impl", None)
    if compiled is None:  # a torch that compiles modules another way: compiled, just not timed
        return

    def first_call(*args, **kwargs):
        print(f"compiling {what} (its first call waits for it) ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = compiled(*args, **kwargs)
        except Exception as error:
            reason = compile_toolchain_failure(error)
            if reason is None:
                raise
            module._compiled_call_impl = None  # from now on every call is the plain module's
            print(uncompiled_note(what, reason), file=sys.stderr, flush=True)
            return module._call_impl(*args, **kwargs)
        module._compiled_call_impl = compiled  # later calls go straight to the compiled code
        print(f"{what} compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        return result

    module._compiled_call_impl = first_call


def compile_image_encoder(model: torch.nn.Module) -> None:
    """`torch.compile` `model.vision_encoder` in place (`compile_in_place`: timed once, uncompiled where this
    machine cannot build the kernels).

    Raises:
        ValueError: a torch that cannot compile the encoder (`check_torch_compiles_sam`)."""
    if getattr(model.vision_encoder, "_compiled_call_impl", None) is not None:  # an earlier predictor's
        return
    check_torch_compiles_sam("compile_encoder=True (--compile)")
    compile_in_place(model.vision_encoder, "the image encoder")
