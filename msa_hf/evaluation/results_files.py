# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""What an evaluation writes: Markdown tables in the layout of the paper's, `results.json`, `results.md`
and per-case CSVs, each through the one writer (`output_files.atomic_file`)."""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.evaluation.case_scores import CaseScore
from msa_hf.output_files import atomic_file


def markdown_table(results: dict[str, dict[str, dict[str, float]]], metric: str = "dice") -> str:
    """Rows = structures (+ mean), columns = runs/protocols: the layout of the paper's Tables 1-3."""
    columns = list(results)
    classes = sorted({c for table in results.values() for c in table})
    lines = ["| structure | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for class_name in classes:
        cells = [results[c].get(class_name, {}).get(metric, float("nan")) for c in columns]
        lines.append(f"| {class_name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    with (
        warnings.catch_warnings()
    ):  # a column with no value (HD95 where nothing was found) shows nan, unwarned
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [
            np.nanmean([t[metric] for t in results[c].values()]) if results[c] else float("nan")
            for c in columns
        ]
    lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    return "\n".join(lines)


def evaluation_files(output_dir: str | Path, protocols: Iterable[str]) -> list[Path]:
    """The files an evaluation of `protocols` may write into `output_dir` (`write_results` and the pictures),
    which `msa-hf evaluate` replaces only with `--overwrite`."""
    output_dir = Path(output_dir)
    names = ["results.json", "results.md", *(f"cases_{p}.csv" for p in protocols), "overlays.png"]
    return [output_dir / name for name in [*names, "dice_vs_clicks.png"]]


def write_results(
    output_dir: str | Path,
    report: dict[str, Any],
    scores: dict[str, list[CaseScore]],
    description: str,
    inputs: Iterable[str | Path] = (),
    distance_unit: str = "mm",
    notes: Iterable[str] = (),
) -> None:
    """`results.json` (`report`), `results.md` (Dice and HD95 tables of `report["tables"]`, titled with
    `description`, followed by `notes`; HD95 in `distance_unit`: "mm", or "pixels" for 2-D pictures) and one
    `cases_<protocol>.csv` per protocol of `scores` in `output_dir`. Each file is
    written whole or not at all; other files in `output_dir` are left alone, and an `output_dir` inside one
    of `inputs` (the dataset scored) is refused."""
    output_dir = Path(output_dir)
    with atomic_file(output_dir / "results.json", inputs) as staging:
        staging.write_text(json.dumps(report, indent=2))
    tables = report["tables"]
    with atomic_file(output_dir / "results.md", inputs) as staging:
        staging.write_text(
            f"Dice per structure ({description})\n\n{markdown_table(tables)}\n\n"
            f"HD95 ({distance_unit})\n\n{markdown_table(tables, 'hd95')}\n"
            + "".join(f"\nNote: {note}\n" for note in notes)
        )
    for protocol, protocol_scores in scores.items():
        write_case_csv(protocol_scores, output_dir / f"cases_{protocol}.csv", inputs, distance_unit)


def write_case_csv(
    scores: list[CaseScore], path: str | Path, inputs: Iterable[str | Path] = (), distance_unit: str = "mm"
) -> None:
    """One row per (case, structure) with every metric; the HD95 column is `hd95_mm`, or `hd95_px` where
    `distance_unit` is "pixels"; where the scores measured the structure's size (`CaseScore.sizes`), also the
    predicted and reference size (`predicted_ml`, `reference_ml`; `_px` for pixels)."""
    unit = "px" if distance_unit == "pixels" else "mm"
    sized = any(s.sizes is not None for s in scores)
    size_unit = "px" if distance_unit == "pixels" else "ml"
    with atomic_file(path, inputs) as staging, staging.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["case_id", "class_name", "dice", "iou", f"hd95_{unit}", "nsd", "dice_per_click"]
        writer.writerow(header + ([f"predicted_{size_unit}", f"reference_{size_unit}"] if sized else []))
        for s in scores:
            row = [
                s.case_id,
                s.class_name,
                s.dice,
                s.iou,
                s.hd95,
                s.nsd,
                " ".join(f"{d:.4f}" for d in s.dice_per_click),
            ]
            writer.writerow(row + (list(s.sizes or ("", "")) if sized else []))
