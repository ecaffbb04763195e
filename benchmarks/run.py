# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`make bench`: the speed and memory suite, one process per case, results as CSV + Markdown.

    python -m benchmarks.run                   # CPU, ViT-B geometry, modest sizes (under 10 minutes here)
    python -m benchmarks.run --full            # adds 1024 px training and larger batches (long on CPU)
    python -m benchmarks.run --device cuda     # a GPU: 1024 px, bf16 autocast, images/s and MFU
    python -m benchmarks.run --tiny --jobs 2 --output build/bench   # the CI regression run: every case, tiny
    python -m benchmarks.run --recipes         # memory of the README's GPU recipe (ViT-B, 1024 px, bf16, MSA)
    python -m benchmarks.run --precision       # the image encoder in float32 and bfloat16 autocast on this CPU

A table's case runs in a fresh interpreter; a --tiny case in a process forked from one that has done the imports.
Writes `<output>/<device>[-recipes][-precision][-full][-tiny].csv` and `.md` (the tables and the target checks), again after
every case. A case that fails or runs past `--timeout` is listed with why under "Failed cases", the rest still
run, and the exit code is 1. With `--time-budget`, no case starts once it is spent; those are listed as not run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

COLUMNS = [
    "section", "case", "model", "method", "retention", "checkpointing", "recompute_mlp", "narrow_attention", "multimask", "geometry", "size", "batch", "depth",
    "device", "dtype", "repeats", "median_ms", "min_ms", "max_ms", "peak_mb", "allocated_mb", "gmacs", "images_per_s", "mfu",
    "trainable_m", "compile", "compile_s", "fast", "command",
]  # fmt: skip


def plan(device: str, full: bool, tiny: bool) -> list[dict[str, Any]]:
    """The cases of one run, in order; each dict is a case's parameters plus its `section`."""
    cuda = device.startswith("cuda")
    geometry = "tiny" if tiny else "ViT-B"
    dtype = "bfloat16" if cuda else "float32"
    small, big = (64, 64) if tiny else ((1024, 1024) if cuda else (256, 1024))
    quick = (
        dict(repeats=1, warmup=0)
        if tiny
        else (dict(repeats=10, warmup=3) if cuda else dict(repeats=3, warmup=1))
    )
    common = dict(geometry=geometry, device=device, dtype=dtype)
    cases: list[dict[str, Any]] = []

    def add(section: str, case: str, **params: Any) -> None:
        cases.append({"section": section, "case": case, **common, **quick, **params})

    encoder_batch = 8 if cuda else (2 if tiny else 4)
    # the first case of a run also pays for warming the machine up: two warm-up calls, five timed
    encoder_repeats = {} if tiny or cuda else dict(repeats=5, warmup=2)
    for model in ("sam", "msa", "msa-3d"):
        add("encoder", "encoder_forward", model=model, size=small, batch=encoder_batch,
            depth=(2 if tiny else 4) if model == "msa-3d" else None, **encoder_repeats)  # fmt: skip
    add("encoder", "encoder_forward", model="msa", size=small, batch=encoder_batch, depth=None, compile=True,
        **encoder_repeats)  # fmt: skip
    if not tiny:
        for size in (512, 1024) if not cuda else ():
            for model in ("sam", "msa"):
                add("encoder", "encoder_forward", model=model, size=size, batch=1, depth=None,
                    **(dict(repeats=2, warmup=0) if size == 1024 else {}))  # fmt: skip
    train_batch = 8 if cuda else 2
    # MSA recomputes its frozen MLPs' hidden layer by default (msa_hf.modeling.frozen_mlp); one row without, to show
    # what that trades. On CPU, --full adds the comparison at 1024 px, batch 1 (a GPU runs it at 1024 anyway).
    training_geometries = [(small, train_batch)] + ([(1024, 1)] if full and not cuda and not tiny else [])
    for size, batch in training_geometries:
        for method in ("msa", "lora", "full", "decoder"):
            for checkpointing in (False, True):
                add("training", "train_step", method=method, checkpointing=checkpointing, size=size, batch=batch,
                    recompute_mlp=True if method == "msa" else None,
                    **(dict(repeats=1, warmup=1) if size == 1024 and not cuda else {}))  # fmt: skip
        add("training", "train_step", method="msa", checkpointing=False, recompute_mlp=False, size=size,
            batch=batch, **(dict(repeats=1, warmup=1) if size == 1024 and not cuda else {}))  # fmt: skip
    if full or cuda:
        add(
            "training",
            "train_step",
            method="msa",
            checkpointing=False,
            recompute_mlp=True,
            size=small,
            batch=train_batch,
            compile=True,
        )
    for depth in (2,) if tiny else ((4, 8, 16) if cuda else (2, 4, 8)):
        add("3-D", "train_step", method="msa-3d", checkpointing=False, size=small, batch=depth, depth=depth)
    if not tiny:
        sizes = [(256, 1), (256, 4), (512, 1)] if not cuda else [(1024, 1), (1024, 2), (1024, 4)]
        if full:
            sizes += [(1024, 1), (512, 2)] if not cuda else [(1024, 16)]
        for size, batch in sizes:
            add("scaling", "train_step", method="msa", checkpointing=False, size=size, batch=batch,
                **({} if cuda else dict(repeats=2, warmup=1)))  # fmt: skip
    for model, fast in (("sam", False), ("msa", False), ("sam", True), ("msa", True)):
        for multimask in (False, True):
            add("interactive", "decoder_click", model=model, fast=fast, multimask=multimask, size=big, batch=1,
                **({} if tiny else dict(repeats=50, warmup=5)))  # fmt: skip
    # what train.py's retention options add to a step, and the base fallback to encoding and to a click, beside
    # the plain MSA rows above (last of the plain rows: a lent GPU's budget drops these first)
    for retention in ("distill", "replay"):
        add("retention", "train_step", method="msa", retention=retention, checkpointing=False, size=small,
            batch=train_batch)  # fmt: skip
    add("retention", "encoder_forward", model="msa+fallback", size=small, batch=encoder_batch, depth=None,
        **encoder_repeats)  # fmt: skip
    for fast in (False, True):
        add("retention", "decoder_click", model="msa+fallback", fast=fast, multimask=True, size=big, batch=1,
            **({} if tiny else dict(repeats=50, warmup=5)))  # fmt: skip
    if cuda:  # a lent GPU's lease is short: the compiled cases, slow to start, go after every plain row
        cases.sort(key=lambda case: bool(case.get("compile")))
    return cases


def precision_plan(device: str, tiny: bool) -> list[dict[str, Any]]:
    """The image encoder (SAM's and MSA's) in float32 and under bfloat16 autocast, at 256 px (batch 4) and
    1024 px (batch 1): what `--dtype bfloat16` buys on this processor. On a CPU that computes bfloat16 natively
    (`placement.native_bfloat16_cpu`, said in the table's heading) it is about twice as fast; elsewhere it is
    emulated and slower."""
    geometry, sizes = ("tiny", [(64, 2)]) if tiny else ("ViT-B", [(256, 4), (1024, 1)])
    repeats = dict(repeats=1, warmup=0) if tiny else dict(repeats=3, warmup=1)
    return [
        {"section": "precision", "case": "encoder_forward", "model": model, "geometry": geometry, "size": size,
         "batch": batch, "depth": None, "device": device, "dtype": dtype, **repeats}
        for size, batch in sizes for model in ("sam", "msa") for dtype in ("float32", "bfloat16")
    ]  # fmt: skip


RECIPE_BATCH = 8  # the README's GPU recipes train with --batch-size 8 per process


def recipe_plan(device: str, tiny: bool) -> list[dict[str, Any]]:
    """The README's GPU training recipe (MSA, ViT-B, 1024 px, bf16 autocast), with and without activation
    checkpointing. On a GPU at the recipe's batch; elsewhere at batches 1 and 2, which `recipe_estimates`
    extends linearly to the recipe's batch (activations grow with the batch, weights and state do not).

    A third setting runs the folded attention's SDPA route (`narrow_attention` False), keeping the wide
    tensors the narrow route (the default on every device) does not: what the narrow route saves (on a GPU
    at the recipe's batch only)."""
    cuda = device.startswith("cuda")
    batches = (1, 2, RECIPE_BATCH) if cuda else (1, 2)
    size, geometry = (64, "tiny") if tiny else (1024, "ViT-B")
    settings = [
        (False, None, batches),
        (True, None, batches),
        (False, False, batches[-1:] if cuda else batches),
    ]
    return [
        {"section": "recipes", "case": "train_step", "method": "msa", "checkpointing": checkpointing,
         "narrow_attention": narrow_attention, "size": size, "batch": batch, "geometry": geometry,
         "device": device, "dtype": "bfloat16", "repeats": 2 if cuda else 1, "warmup": 1 if cuda else 0}
        for checkpointing, narrow_attention, sizes in settings for batch in sizes
    ]  # fmt: skip


def recipe_estimates(rows: list[dict[str, Any]], batch: int = RECIPE_BATCH) -> list[dict[str, Any]]:
    """Per setting (checkpointing, narrow_attention): peak MiB at batches 1 and 2, the per-image growth, and
    the peak at `batch` (measured when a row has it, else `peak(1) + (batch - 1) * growth`). Peaks are
    allocated tensor memory (`allocated_mb`, what a GPU must hold) when every row has it, else the resident
    mark (`peak_mb`); `measure` says which."""
    estimates = []
    recipe_rows = [r for r in rows if r["section"] == "recipes"]
    key = "allocated_mb" if recipe_rows and all(r.get("allocated_mb") for r in recipe_rows) else "peak_mb"
    settings = dict.fromkeys((r["checkpointing"], r.get("narrow_attention")) for r in recipe_rows)
    for checkpointing, narrow_attention in settings:
        by_batch = {
            r["batch"]: r[key]
            for r in recipe_rows
            if (r["checkpointing"], r.get("narrow_attention")) == (checkpointing, narrow_attention)
        }
        if 1 not in by_batch or 2 not in by_batch:
            continue
        growth = by_batch[2] - by_batch[1]
        measured = by_batch.get(batch)
        estimates.append({
            "checkpointing": checkpointing, "narrow_attention": narrow_attention, "peak_mb_batch1": by_batch[1], "peak_mb_batch2": by_batch[2],
            "per_image_mb": growth,
            f"peak_mb_batch{batch}": measured if measured is not None else by_batch[1] + (batch - 1) * growth,
            "how": "measured" if measured is not None else "extended linearly from batches 1 and 2",
            "measure": "allocated" if key == "allocated_mb" else "resident",
        })  # fmt: skip
    return estimates


class CaseFailed(RuntimeError):
    """A case that exited with an error or ran past its timeout; `reason` is one line for the tables."""

    def __init__(self, params: dict[str, Any], reason: str, details: str = ""):
        super().__init__(f"benchmark case {params} failed: {reason}\n{details}")
        self.params, self.reason = params, reason


def run_case(params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one case in a fresh Python process; its last stdout line is the JSON row. Raises `CaseFailed`."""
    parameters = {k: v for k, v in params.items() if k not in ("section", "case")}
    command = [sys.executable, "-m", "benchmarks.run", "--one", params["case"], json.dumps(parameters)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[1]
        )
    except subprocess.TimeoutExpired:
        raise CaseFailed(params, f"ran past its {timeout:g} s timeout (--timeout)") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise CaseFailed(params, lines[-1] if lines else f"exit code {done.returncode}", done.stderr[-3000:])
    return {
        "section": params["section"],
        "case": params["case"],
        **json.loads(done.stdout.strip().splitlines()[-1]),
    }


def run_case_forked(params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """`run_case` in a process forked from a server that imported torch, transformers and the cases once
    (multiprocessing's forkserver): each case keeps a process of its own, without a fresh interpreter's seven
    seconds of imports, which on a tiny model are most of a case. For --tiny; the tables keep fresh processes.
    Raises `CaseFailed`."""
    import multiprocessing

    from .cases import run_in_child

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["benchmarks.cases"])  # the server only imports: no thread pool forked
    parameters = {k: v for k, v in params.items() if k not in ("section", "case")}
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=run_in_child, args=(params["case"], parameters, send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise CaseFailed(params, f"ran past its {timeout:g} s timeout (--timeout)")
        outcome = receive.recv()
    except EOFError:  # ended without a word: killed (out of memory), or crashed
        child.join()
        raise CaseFailed(params, f"exit code {child.exitcode}") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
    if outcome[0] != "ok":
        raise CaseFailed(params, outcome[1], outcome[2][-3000:])
    return {"section": params["section"], "case": params["case"], **json.loads(outcome[1])}


def _find(rows: list[dict], **match: Any) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def precision_checks(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(target, measured, goal, verdict) of the precision rows: bfloat16 autocast's time per image over
    float32's, per encoder and size; below 1x, `--dtype bfloat16` is worth it on this processor."""
    checks = []
    for model, size in dict.fromkeys((r["model"], r["size"]) for r in rows if r["section"] == "precision"):
        timed = {
            dtype: _find(rows, section="precision", model=model, size=size, dtype=dtype)
            for dtype in ("float32", "bfloat16")
        }
        if all(timed.values()):
            ratio = (timed["bfloat16"]["median_ms"] / timed["bfloat16"]["batch"]) / (
                timed["float32"]["median_ms"] / timed["float32"]["batch"]
            )
            checks.append((f"{model} encoder in bfloat16 vs float32, {size} px", f"{ratio:.2f}x time",
                           "< 1x: --dtype bfloat16 pays here", "met" if ratio < 1 else "missed"))  # fmt: skip
    return checks


def target_checks(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(target, measured, goal, verdict) for each speed and memory target these rows can judge."""
    checks = []
    small = min((r["size"] for r in rows if r["case"] == "encoder_forward"), default=None)

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    for size in sorted({r["size"] for r in rows if r["case"] == "encoder_forward"}):
        sam = _find(rows, case="encoder_forward", model="sam", size=size)
        msa = _find(rows, case="encoder_forward", model="msa", size=size, compile=None)
        if sam and msa:
            time_ratio = (msa["median_ms"] / msa["batch"]) / (sam["median_ms"] / sam["batch"])
            flop_ratio = (msa["gmacs"] / msa["batch"]) / (sam["gmacs"] / sam["batch"])
            checks.append((f"MSA 2-D encoder vs SamModel, {size} px", f"{time_ratio:.3f}x time "
                           f"({flop_ratio:.3f}x FLOPs)", "<= 1.15x", verdict(time_ratio <= 1.15)))  # fmt: skip
    sam = _find(rows, case="encoder_forward", model="sam", size=small)
    depth = _find(rows, case="encoder_forward", model="msa-3d", size=small)
    if sam and depth:
        time_ratio = (depth["median_ms"] / depth["batch"]) / (sam["median_ms"] / sam["batch"])
        flop_ratio = (depth["gmacs"] / depth["batch"]) / (sam["gmacs"] / sam["batch"])
        checks.append((f"depth branch (D={depth['depth']}) vs SamModel, {small} px",
                       f"{time_ratio:.3f}x time, {flop_ratio:.3f}x FLOPs ({time_ratio / flop_ratio:.3f})",
                       "time/FLOP ratio <= 1.2", verdict(time_ratio / flop_ratio <= 1.2)))  # fmt: skip
    for size in sorted({r["size"] for r in rows if r["section"] == "training"}):
        full = _find(
            rows, case="train_step", method="full", checkpointing=False, section="training", size=size
        )
        for checkpointing, recompute_mlp, goal in (
            (False, True, 0.6),
            (True, True, 0.35),
            (False, False, 0.6),
        ):
            msa = _find(rows, case="train_step", method="msa", checkpointing=checkpointing, section="training",
                        compile=None, size=size, recompute_mlp=recompute_mlp)  # fmt: skip
            if not (full and msa and full.get("allocated_mb") and msa.get("allocated_mb")):
                continue
            # judged on allocated tensor memory (what a GPU must hold); the CPU resident mark is shown beside it
            ratio = msa["allocated_mb"] / full["allocated_mb"]
            measured = f"{ratio:.3f}x allocated"
            if not msa["device"].startswith("cuda") and full["peak_mb"] > 0:
                measured += f" ({msa['peak_mb'] / full['peak_mb']:.3f}x resident)"
            label = "with" if checkpointing else "without"
            if not recompute_mlp:
                label += " activation checkpointing or MLP recomputation"
            else:
                label += " activation checkpointing"
            checks.append((f"MSA training peak memory {label} vs full fine-tuning, {size} px, batch {msa['batch']}",
                           measured, f"<= {goal}x", verdict(ratio <= goal)))  # fmt: skip
    for multimask in (False, True):
        sam = _find(rows, case="decoder_click", model="sam", multimask=multimask, fast=False)
        msa = _find(rows, case="decoder_click", model="msa", multimask=multimask, fast=True)
        if sam and msa:
            ratio = msa["median_ms"] / sam["median_ms"]
            checks.append((f"MSA per click ({'3 masks' if multimask else '1 mask'}, ClickDecoder) vs SamModel's decoder",
                           f"{msa['median_ms']:.1f} ms vs {sam['median_ms']:.1f} ms ({ratio:.2f}x)", "<= 0.5x",
                           verdict(ratio <= 0.5)))  # fmt: skip
    for case, label in (("encoder_forward", "encoder forward"), ("train_step", "training step")):
        compiled = _find(rows, case=case, model="msa", compile=True) or _find(
            rows, case=case, method="msa", compile=True
        )
        if compiled:
            plain = _find(rows, case=case, model=compiled.get("model"), method=compiled.get("method"),
                          size=compiled["size"], batch=compiled["batch"], compile=None, checkpointing=compiled.get("checkpointing"))  # fmt: skip
            if plain:
                ratio = compiled["median_ms"] / plain["median_ms"]
                checks.append((f"torch.compile, MSA {label} ({compiled['size']} px, batch {compiled['batch']})",
                               f"{ratio:.2f}x time after {compiled['compile_s']:.0f} s compiling", "measured",
                               "faster" if ratio < 0.97 else ("slower" if ratio > 1.03 else "no effect")))  # fmt: skip
    encoder = _find(rows, case="encoder_forward", model="sam", size=1024)
    if encoder and encoder.get("mfu") is not None:
        checks.append(("ViT-B 1024 encoder inference MFU (bf16)", f"{encoder['mfu']:.1%}", ">= 40%",
                       verdict(encoder["mfu"] >= 0.4)))  # fmt: skip
    train = _find(rows, case="train_step", method="msa", checkpointing=False, section="training")
    if train and train["device"].startswith("cuda"):
        checks.append(("MSA 2-D training throughput", f"{train['images_per_s']:.0f} images/s", ">= 150",
                       verdict(train["images_per_s"] >= 150)))  # fmt: skip
    return checks


def _cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(
    rows: list[dict[str, Any]],
    machine: str,
    command: str,
    failures: list[CaseFailed] | None = None,
    not_run: list[dict[str, Any]] | None = None,
) -> str:
    """The tables (one per section), the target checks, the cases that failed (with why), and those left
    out when the run's `--time-budget` was spent."""
    shown = {
        "encoder": ["model", "compile", "size", "batch", "depth", "median_ms", "min_ms", "max_ms", "images_per_s", "gmacs", "mfu", "compile_s", "peak_mb"],
        "training": ["method", "checkpointing", "recompute_mlp", "compile", "size", "batch", "median_ms", "min_ms", "max_ms", "images_per_s", "trainable_m", "compile_s", "peak_mb", "allocated_mb"],
        "3-D": ["depth", "size", "batch", "median_ms", "min_ms", "max_ms", "images_per_s", "peak_mb", "allocated_mb"],
        "scaling": ["size", "batch", "median_ms", "min_ms", "max_ms", "images_per_s", "peak_mb", "allocated_mb"],
        "interactive": ["model", "fast", "multimask", "size", "median_ms", "min_ms", "max_ms", "peak_mb"],
        "recipes": ["method", "checkpointing", "narrow_attention", "size", "batch", "dtype", "median_ms", "images_per_s", "peak_mb", "allocated_mb"],
        "retention": ["case", "model", "method", "retention", "fast", "size", "batch", "median_ms", "min_ms", "max_ms", "images_per_s", "peak_mb", "allocated_mb"],
        "precision": ["model", "dtype", "size", "batch", "median_ms", "min_ms", "max_ms", "images_per_s"],
    }  # fmt: skip
    titles = {
        "encoder": "Image encoder forward",
        "training": "Training step (forward + backward + AdamW)",
        "3-D": "3-D training step vs D (depth branch; batch = one volume of D slices; images/s = slices/s)",
        "scaling": "MSA training step vs input size and batch",
        "interactive": "One click with a cached image embedding (prompt encoder + mask decoder; fast = msa_hf's ClickDecoder)",
        "recipes": "The GPU recipe's training step (MSA adapters + decoder, bf16 autocast)",
        "retention": "What retention adds: a self-distillation step, a step with a quarter of its rows replayed "
        "(the msa training row above is the plain step), and the base fallback's encoding and click (beside the "
        "msa encoder and click rows)",
        "precision": "Image encoder forward in float32 and under bfloat16 autocast (`--dtype bfloat16`)",
    }
    first = rows[0] if rows else (failures[0].params if failures else not_run[0])
    dtypes = {row["dtype"] for row in rows} or {first["dtype"]}
    dtype = first["dtype"] if len(dtypes) == 1 else "dtype per row"
    lines = [
        f"Measured by `{command}` on {machine}; geometry {first['geometry']}, {dtype}, random weights. "
        "Times in ms (median, min, max over the repeats); memory in MiB: `peak_mb` is the growth of the resident "
        "high-water mark from before the model was built (CUDA: max allocated), `allocated_mb` the peak of live "
        "tensor storage over one training step (CUDA: max allocated), which the memory targets use.",
        "",
    ]
    for section, columns in shown.items():
        part = [r for r in rows if r["section"] == section]
        if not part:
            continue
        lines += [
            f"**{titles[section]}**",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
        ]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in part]
        lines.append("")
    estimates = recipe_estimates(rows)
    if estimates:
        columns = list(estimates[0])
        lines += [f"**Peak memory of the recipe at batch {RECIPE_BATCH} (MiB)**", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]  # fmt: skip
        lines += ["| " + " | ".join(_cell(e[c]) for c in columns) + " |" for e in estimates]
        lines.append("")
    checks = target_checks([row for row in rows if row["section"] != "precision"]) + precision_checks(rows)
    if checks:
        lines += ["**Targets**", "", "| target | measured | goal | verdict |", "|---|---|---|---|"]
        lines += [f"| {t} | {m} | {g} | {v} |" for t, m, g, v in checks]
        lines.append("")
    if failures:
        lines += ["**Failed cases** (no row above; the run's exit code is 1)", "", "| section | case | parameters | why |",
                  "|---|---|---|---|"]  # fmt: skip
        for failure in failures:
            why = failure.reason.replace("|", "\\|")  # a pipe in an error message would split the cell
            lines.append(f"| {_case_cells(failure.params)} | {why} |")
        lines.append("")
    if not_run:
        lines += ["**Not run** (the run's --time-budget was spent first)", "", "| section | case | parameters |",
                  "|---|---|---|"]  # fmt: skip
        lines += [f"| {_case_cells(params)} |" for params in not_run]
        lines.append("")
    return "\n".join(lines)


def _case_cells(params: dict[str, Any]) -> str:
    """`section | case | parameters` cells of a case that has no row."""
    parameters = {k: v for k, v in params.items() if k not in ("section", "case")}
    return f"{params['section']} | {params['case']} | `{json.dumps(parameters)}`"


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    from msa_hf.inference.placement import native_bfloat16_cpu

    native = (
        ", bfloat16 in hardware (AMX or AVX512-BF16)" if native_bfloat16_cpu() else ", no bfloat16 hardware"
    )
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores{native}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--full", action="store_true", help="add the long cases (1024 px training on CPU)")
    parser.add_argument(
        "--tiny", action="store_true", help="every case on a tiny model (the CI regression run)"
    )
    parser.add_argument(
        "--recipes", action="store_true", help="only the memory of the README's GPU training recipe"
    )
    parser.add_argument(
        "--precision", action="store_true", help="only the image encoder in float32 and bfloat16 autocast"
    )
    parser.add_argument("--output", default="benchmarks/results", help="folder for the CSV and Markdown")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per case")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds for the whole run: no case starts after that; the ones left are listed as not run",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cases run at once (with --tiny only: cases sharing the machine time each other's load too)",
    )
    parser.add_argument("--one", nargs=2, metavar=("CASE", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.jobs > 1 and not args.tiny):
        parser.error(f"--jobs {args.jobs}: one case at a time (1) for tables; several only with --tiny.")
    if args.one:  # child mode: one case, its row as JSON on the last line
        from .cases import CASES

        print(json.dumps(CASES[args.one[0]](json.loads(args.one[1]))))
        return 0
    command = (
        "python -m benchmarks.run"
        + "".join(
            f" {flag}"
            for flag, on in (
                ("--full", args.full),
                ("--tiny", args.tiny),
                ("--recipes", args.recipes),
                ("--precision", args.precision),
            )
            if on
        )
        + (f" --device {args.device}" if args.device != "cpu" else "")
    )
    if args.recipes:
        cases = recipe_plan(args.device, args.tiny)
    elif args.precision:
        cases = precision_plan(args.device, args.tiny)
    else:
        cases = plan(args.device, args.full, args.tiny)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stem = (
        args.device.split(":")[0]
        + ("-recipes" if args.recipes else "")
        + ("-precision" if args.precision else "")
        + ("-full" if args.full else "")
        + ("-tiny" if args.tiny else "")
    )
    machine = machine_description(args.device)
    rows: list[dict[str, Any]] = []
    failures: list[CaseFailed] = []
    not_run: list[dict[str, Any]] = []
    started = time.time()

    def measure(params: dict[str, Any]) -> dict[str, Any] | CaseFailed | None:
        """The case's row, its failure, or None when the time budget was spent before it could start."""
        if args.time_budget is not None and time.time() - started >= args.time_budget:
            return None
        try:
            return (run_case_forked if args.tiny else run_case)(params, args.timeout)
        except CaseFailed as failure:
            return failure

    # each case is its own process (a fresh one for the tables, forked with the imports done for --tiny); with
    # --jobs several run at once (threads only wait on them), and the results are taken in the plan's order
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for index, (params, outcome) in enumerate(zip(cases, pool.map(measure, cases), strict=True), 1):
            label = (f"[{index}/{len(cases)}] {params['section']}: {params['case']} "
                     f"{ {k: params[k] for k in ('model', 'method', 'retention', 'checkpointing', 'compile', 'fast', 'multimask', 'size', 'batch', 'depth') if params.get(k) is not None} }")  # fmt: skip
            if outcome is None:
                not_run.append(params)
                continue
            if isinstance(outcome, CaseFailed):
                # the other cases still run (one out-of-memory or stuck case must not cost a lent GPU's whole
                # session); the run still fails at the end, so the CI regression run stays red on any error
                failures.append(outcome)
                print(f"{label} -> FAILED: {outcome}", flush=True)
            else:
                outcome["command"] = command
                rows.append(outcome)
                print(f"{label} -> {outcome['median_ms']:.1f} ms, {outcome['peak_mb']:.0f} MiB", flush=True)
            # rewritten after every case, so a run killed part way keeps what it measured
            write_results(output / stem, rows, markdown(rows, machine, command, failures))
    if not_run:
        print(f"--time-budget of {args.time_budget:g} s spent: {len(not_run)} case(s) not run", flush=True)
        write_results(output / stem, rows, markdown(rows, machine, command, failures, not_run))
    print(markdown(rows, machine, command, failures, not_run))
    print(f"{len(rows)} cases in {(time.time() - started) / 60:.1f} min; written {output / stem}.csv and .md")
    if failures:
        print(f"{len(failures)} of {len(cases)} cases failed: " + "; ".join(f.reason for f in failures))
        return 1
    return 0


def write_results(path_stem: Path, rows: list[dict[str, Any]], report: str) -> None:
    """`<path_stem>.csv` (the rows, `COLUMNS`) and `<path_stem>.md` (`report`)."""
    with path_stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    path_stem.with_suffix(".md").write_text(report + "\n")


if __name__ == "__main__":
    sys.exit(main())
