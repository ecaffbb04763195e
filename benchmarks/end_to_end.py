# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""train.py and `msa-hf evaluate` end to end on a generated dataset: what a user's job gets, not a bare step.

    python -m benchmarks.end_to_end --device cuda --output build/gpu-bench   # ViT-B, 1024 px (GPU script)
    python -m benchmarks.end_to_end --device cpu --tiny --output build/e2e   # the same steps here, in seconds

Writes a random ViT-B SamModel base and a dataset of 1024 px pictures (bright disks and squares on noise,
two structures) to a temporary folder, prepares it with `prepare_dataset`, then runs `msa-hf train` (MSA,
batch 8, bf16 autocast from the launcher's environment on CUDA, workers and pinned memory by default) for a
fixed number of steps in its own process and `msa-hf evaluate` on the test split. The table (`end-to-end.md`)
puts the job's images/s (steps after the first, data waits included, validation excluded) next to the bare
training step's from the suite's table when it is there (`--step-table`), with the share of time spent
waiting for data and the first step's seconds (start-up, workers, any compilation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_pictures(folder: Path, cases: int, size: int, seed: int = 0) -> None:
    """`cases` grey pictures of `size` px with a disk (label 1) and a square (label 2), and `labels.txt`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for index in range(cases):
        image = rng.integers(0, 60, (size, size)).astype(np.uint8)
        label = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        radius = rng.integers(size // 10, size // 5)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1
        side = size // 8
        top, left = rng.integers(0, size // 6), rng.integers(size - size // 3, size - side)
        label[top : top + side, left : left + side] = 2
        image[label > 0] = 200
        Image.fromarray(image).save(folder / f"case{index:03d}.png")
        Image.fromarray(label).save(folder / f"case{index:03d}_mask.png")
    (folder / "labels.txt").write_text("1 disk\n2 square\n")


def bare_step_images_per_second(table: Path) -> float | None:
    """The suite's MSA training step at batch 8 (no checkpointing, not compiled), images/s, if measured."""
    if not table.is_file():
        return None
    with table.open() as handle:
        for row in csv.DictReader(handle):
            if (
                (row.get("case"), row.get("method"), row.get("checkpointing"), row.get("compile") or "")
                == ("train_step", "msa", "False", "")
                and row.get("section") == "training"
                and row.get("images_per_s")
            ):
                return float(row["images_per_s"])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.end_to_end", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny geometry at 128 px (a dry run)")
    parser.add_argument("--steps", type=int, default=None, help="default: 60 (ViT-B), 12 (tiny)")
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument("--output", default="build/gpu-bench")
    parser.add_argument(
        "--step-table",
        default=None,
        help="the suite's CSV (default: OUTPUT/<device>[-tiny].csv, as it writes it)",
    )
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    try:  # train.py reads prepared datasets through HF Datasets, which a bare GPU image may lack
        import datasets  # noqa: F401
    except ImportError:
        reason = (
            "not run: this machine's Python has no `datasets` package, which train.py needs (pip install "
            "datasets; offline: WHEELHOUSE=<folder of its wheels> bash benchmarks/gpu_session.sh)"
        )
        (output / "end-to-end.md").write_text(f"train.py and msa-hf evaluate end to end: {reason}.\n")
        print(reason, flush=True)
        return 0
    from benchmarks.geometry import build_model
    from msa_hf.data import prepare_dataset

    geometry, size = ("tiny", 128) if args.tiny else ("ViT-B", 1024)
    steps = args.steps or (12 if args.tiny else 60)
    batch = 8
    work = Path(tempfile.mkdtemp(prefix="msa-e2e-"))
    build_model("sam", geometry, size).save_pretrained(work / "base")
    write_pictures(work / "pictures", args.cases, size)
    prepare_dataset(work / "pictures", work / "dataset", split=(0.5, 0.25, 0.25))
    environment = dict(os.environ)
    cuda = args.device.startswith("cuda")
    environment["ACCELERATE_MIXED_PRECISION"] = "bf16" if cuda else "no"
    if not cuda:
        environment["CUDA_VISIBLE_DEVICES"] = ""  # accelerate picks the GPU when it sees one
    command = [
        sys.executable, "-m", "msa_hf.cli", "train", "--base", str(work / "base"), "--dataset", str(work / "dataset"),
        "--output-dir", str(work / "run"), "--steps", str(steps), "--batch-size", str(batch), "--eval-every",
        str(steps), "--checkpoint-every", str(steps), "--warmup-steps", "5", "--log-with", "none",
        "--no-evaluate-test",
    ]  # fmt: skip
    print("$", " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    trained = subprocess.run(command, env=environment, capture_output=True, text=True)
    job_seconds = time.perf_counter() - start
    print(trained.stdout[-1500:], trained.stderr[-1500:], sep="\n", flush=True)
    if trained.returncode:
        return trained.returncode
    result = json.loads((work / "run" / "train_result.json").read_text())
    evaluate = [
        sys.executable, "-m", "msa_hf.cli", "evaluate", str(work / "run" / "model"), "--dataset", str(work / "dataset"),
        "--split", "test", "--protocols", "box", "points1", "--device", args.device, "--batch-size", "16",
    ]  # fmt: skip
    print("$", " ".join(evaluate[2:]), flush=True)
    start = time.perf_counter()
    evaluated = subprocess.run(evaluate, capture_output=True, text=True)
    evaluate_seconds = time.perf_counter() - start
    print(evaluated.stdout[-1500:], evaluated.stderr[-800:], sep="\n", flush=True)
    suite_table = (
        f"{args.device.split(':')[0]}{'-tiny' if args.tiny else ''}.csv"  # as benchmarks.run names it
    )
    step_table = Path(args.step_table) if args.step_table else output / suite_table
    bare = bare_step_images_per_second(step_table)
    job = result["images_per_second"]
    lines = [
        f"train.py and msa-hf evaluate end to end ({args.device}; {geometry}, {size} px, MSA, batch {batch}, "
        f"{'bf16 autocast' if cuda else 'float32'}; {args.cases} generated cases, half of them for training).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| training steps | {result['steps']} |",
        f"| train.py images/s (steps 2-{result['steps']}, data waits included) | {job:.1f} |",
        f"| bare training step images/s (the suite's table) | {bare:.1f} |" if bare else
        "| bare training step images/s (the suite's table) | not measured in this run |",
        f"| train.py / bare step | {job / bare:.2f} |" if bare else "| train.py / bare step | - |",
        f"| share of the steps' time waiting for data | {result['data_wait_share']:.1%} |",
        f"| first step (start-up, workers, any compilation), s | {result['first_step_seconds']:.1f} |",
        f"| whole train.py process (model load, validation, saving), s | {job_seconds:.1f} |",
        f"| peak memory, MB | {result['peak_memory_mb']:,.0f} |",
        f"| msa-hf evaluate on the test split (box, 1 click), s | {evaluate_seconds:.1f} |"
        + ("" if evaluated.returncode == 0 else f" (exit {evaluated.returncode})"),
    ]  # fmt: skip
    (output / "end-to-end.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return evaluated.returncode


if __name__ == "__main__":
    sys.exit(main())
