# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The dataset card (`README.md`) of a prepared dataset directory, from `msa_hf/hub/cards/dataset_card.md`."""

from __future__ import annotations

from string import Template
from typing import TYPE_CHECKING

from msa_hf.data.slice_dataset import SPLITS

if TYPE_CHECKING:
    from msa_hf.data.prepare import PrepareReport


def render_dataset_card(
    name: str,
    report: PrepareReport,
    source_description: str,
    license_notice: str,
    license_id: str = "other",
) -> str:
    """Fill the dataset card template with the splits, classes and report of a prepared dataset."""
    from msa_hf.hub.cards import read_template

    splits = [split for split in SPLITS if report.slices.get(split, 0) > 0]
    data_files = "\n".join(
        f"  - split: {split}\n    path: data/{split}-00000-of-00001.parquet" for split in splits
    )
    split_rows = "\n".join(f"| {s} | {report.cases.get(s, 0)} | {report.slices.get(s, 0)} |" for s in SPLITS)
    class_rows = "\n".join(
        # a region (a union of label values, `regions.json`) shows the values it holds
        f"| {', '.join(map(str, report.regions.get(value, [value])))} | {class_name} | "
        f"{report.slices_per_class.get(class_name, 0)} |"
        for value, class_name in report.class_names.items()
    )
    notes = [f"- skipped case `{c['case_id']}`: {c['reason']}" for c in report.skipped_cases]
    if report.empty_masks_skipped:
        notes.append(f"- {len(report.empty_masks_skipped)} image(s) with an empty mask were skipped.")
    if report.empty_slices_dropped:
        notes.append(
            f"- {report.empty_slices_dropped} unlabelled slice(s) outside the labelled range were dropped."
        )
    if report.label_remap:  # the stored values are not the source files' own
        remapped = ", ".join(f"{source} -> {target}" for source, target in report.label_remap.items())
        notes.append(f"- label values of the source files were read as: {remapped}.")
    notes += [f"- warning: {message}" for message in report.warnings]
    return Template(read_template("dataset_card.md")).substitute(
        name=name,
        license_id=license_id,
        data_files=data_files,
        source_description=source_description,
        split_rows=split_rows,
        class_rows=class_rows,
        report_notes="\n".join(notes) or "Every case was read without problems.",
        license_notice=license_notice,
    )
