# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""3-D evaluation of depth-branch models: one click per slice on whole volumes reassembled from windows of
D slices, scored per case with the case's spacing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from msa_hf.evaluation.case_scores import case_score, summarise_by_class
from msa_hf.evaluation.decoding import MaskDecoding, decode_protocols
from msa_hf.evaluation.results_files import write_results
from msa_hf.inference.placement import compile_by_default, compile_image_encoder, resolve_placement
from msa_hf.output_files import check_not_an_input
from msa_hf.processing.mask_outputs import logits_to_original_mask


@torch.no_grad()
def evaluate_volumes(
    model: Any,
    dataset_dir: str | Path,
    split: str = "test",
    depth: int | None = None,
    stride: int | None = None,
    classes: str | None = None,
    output_dir: str | Path | None = None,
    window: str | tuple[float, float] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compile_encoder: bool | None = None,
    slice_spacing: float | None = None,
    resample_slices: bool = True,
) -> dict[str, Any]:
    """3-D (depth branch): one-click Dice per organ on whole volumes reassembled from windows, for the
    structures `classes` names (names or label values, comma-separated; default all). With `output_dir`,
    writes results.json, results.md (Dice and HD95 tables) and cases_volume_points1.csv there. `window`:
    the CT window the model was trained with (its `MsaProcessor`'s; `None`: the modality default).
    `compile_encoder`: `torch.compile` the image encoder (None: where it pays, `compile_by_default`, counting
    every window's D slices). `slice_spacing`: the model's training slice spacing (its `MsaProcessor`'s).

    Each window of D consecutive slices goes through the model at once; every slice showing the organ gets
    its most interior click, slices without it get none and count as background. Overlapping windows are
    averaged (`reassemble_volume`), and Dice/IoU/HD95/NSD are computed on the case's volume with its spacing.

    A case whose slices lie off `slice_spacing` (`spacings_differ`) is seen as `msa-hf predict` shows it the
    volume: resampled along its slice axis onto the model's grid (`ResampledCase`: images interpolated, each
    model slice clicked on its nearest input slice's label), its votes brought back onto its own slices and
    scored against its own labels. `resample_slices=False` shows the model every case as the dataset holds it
    (the report's `notes` then say which cases lie off the model's spacing). The report's `resampled` gives
    each resampled case's grids.
    """
    from msa_hf.data import (
        PromptSampling,
        SamVolumeTransform,
        VolumeWindowDataset,
        load_prepared,
        read_class_names,
        read_regions,
        select_class_names,
        structure_mask,
    )
    from msa_hf.data.tasks import structures_present
    from msa_hf.data.volume_windows import reassemble_volume
    from msa_hf.evaluation.resampled_cases import ResampledCase
    from msa_hf.inference.slice_spacing import SliceResampling

    if output_dir is not None:  # refused before the model runs, not after
        check_not_an_input(output_dir, [dataset_dir])
    depth = depth or model.config.num_slices
    image_size = model.config.vision_config.image_size
    class_names = select_class_names(read_class_names(dataset_dir), classes)
    slices = load_prepared(dataset_dir)[split]
    transform = SamVolumeTransform(
        image_size=image_size,
        prompts=PromptSampling(num_positive=1, click_strategy="interior"),
        deterministic=True,
        window=window,
    )
    regions = read_regions(dataset_dir)
    plain = slices.with_format(None)
    # rows per case from the small columns: a per-case `filter` would decode every image of the split once
    # per case (and datasets' `sort` warns under pyarrow 25)
    case_rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, (case_id, slice_index) in enumerate(zip(plain["case_id"], plain["slice"], strict=True)):
        case_rows[case_id].append((slice_index, row))
    rows_of = {case_id: [row for _, row in sorted(rows)] for case_id, rows in case_rows.items()}
    spacing_column = plain["spacing"]
    spacings = {case_id: tuple(spacing_column[rows[0]]) for case_id, rows in rows_of.items()}
    resamplings: dict[str, SliceResampling] = {}  # the cases shown to the model on its slice grid
    for case_id, rows in rows_of.items():
        resampling = SliceResampling.between(len(rows), float(spacings[case_id][2]), slice_spacing)
        if resample_slices and resampling is not None:
            resamplings[case_id] = resampling
    as_is = (
        slices.select(sorted(row for case_id, rows in rows_of.items() if case_id not in resamplings for row in rows))
        if resamplings
        else slices
    )  # fmt: skip
    windows = VolumeWindowDataset(
        as_is, depth, class_names, stride=stride, transform=transform, regions=regions
    )
    placement = resolve_placement(device, dtype)
    model.to(placement.device).eval()

    def encoded_slices() -> int:  # resampled cases: their model slices once per structure, an upper bound
        return len(windows) * depth + len(class_names) * sum(r.model_count for r in resamplings.values())

    if compile_by_default(compile_encoder, placement, encoded_slices):
        compile_image_encoder(model)
    decode = MaskDecoding(model)

    def window_votes(dataset: VolumeWindowDataset, index: int) -> torch.Tensor:
        """`(D, h, w)` +1 / -1 per pixel of one window's item, on its slices' stored size."""
        item = dataset[index]
        # the window's D slices are encoded at once (the depth branch sees them all), then each slice's click
        decode.set_image_embeddings(placement.encode(model, item["pixel_values"][None]))
        prompts = {key: item[key].to(placement.device) for key in ("input_points", "input_labels")}
        logits = decode_protocols(decode, ("points1",), prompts)["points1"][0][:, 0].cpu()  # (D, h, w)
        prompted = (item["input_labels"][:, 0] != -10).any(dim=1)
        logits[~prompted] = -100.0  # no click on this slice: the user saw no organ there
        height, width = (int(v) for v in item["original_sizes"])
        return torch.stack([
            torch.from_numpy(logits_to_original_mask(slice_logits, image_size, item["reshaped_input_sizes"], (height, width)).numpy())
            for slice_logits in logits
        ]).float() * 2 - 1  # fmt: skip

    def reassembled(
        dataset: VolumeWindowDataset, num_slices: dict[str, int]
    ) -> dict[tuple[str, int], np.ndarray]:
        """(case, structure) -> `(num_slices[case], h, w)` mean vote of the windows of `dataset`'s items."""
        parts: dict[tuple[str, int], list[tuple[Any, torch.Tensor]]] = defaultdict(list)
        for index, (depth_window, value) in enumerate(
            tqdm(dataset.items, desc="evaluate volumes", unit="window", leave=False)
        ):
            parts[(depth_window.case_id, value)].append((depth_window, window_votes(dataset, index)))
        # each window votes +1 / -1 per pixel and overlapping windows are averaged; slices outside every window
        # of a structure got no click: background (-1 vote)
        return {
            (case_id, value): reassemble_volume(
                [w for w, _ in found], [p for _, p in found], num_slices=num_slices[case_id], uncovered=-1.0
            ).numpy()
            for (case_id, value), found in parts.items()
        }

    masks = {
        key: case_votes > 0
        for key, case_votes in reassembled(
            windows, {case: len(rows) for case, rows in rows_of.items()}
        ).items()
    }
    scores = []
    for case_id in sorted(rows_of):
        rows = plain.select(rows_of[case_id])  # the case's label stack, read once (not once per structure)
        if case_id in resamplings:  # shown to the model on its grid, scored on the case's own slices
            case = ResampledCase.from_rows(rows, resamplings[case_id])
            case_windows = VolumeWindowDataset(
                case, depth, class_names, stride=stride, transform=transform, regions=regions
            )
            for key, case_votes in reassembled(case_windows, {case_id: len(case)}).items():
                masks[key] = case.votes_to_input(case_votes)
        labels = np.stack([np.asarray(label) for label in rows["label"]])
        # every structure the case holds is scored: one no model slice shows (a thin structure between the
        # slices of a coarser grid) was not found
        for value in structures_present(
            {v for values in rows["labels_present"] for v in values}, class_names, regions
        ):
            target = structure_mask(labels, value, regions)
            predicted = masks.pop((case_id, value), np.zeros_like(target, dtype=bool))
            scores.append(case_score(case_id, class_names[value], predicted, target, spacings[case_id]))
    tables = {"volume_points1": summarise_by_class(scores)}
    volumes = {case: spacing for case, spacing in spacings.items() if len(rows_of[case]) > 1}  # not 2-D cases
    note = slice_spacing_note(volumes, slice_spacing, resampled=resamplings)
    notes = [note] if note else []
    resampled = {case_id: r.describe() for case_id, r in sorted(resamplings.items())}
    if output_dir is not None:
        write_results(
            output_dir,
            {
                "split": split, "depth": depth, "stride": stride or depth, "tables": tables, "notes": notes,
                "resampled": resampled,
            },
            {"volume_points1": scores},
            f"{split} split, whole volumes, one click per slice, windows of {depth} slices",
            inputs=[dataset_dir],
            notes=notes,
        )  # fmt: skip
    return {
        "split": split,
        "depth": depth,
        "tables": tables,
        "scores": scores,
        "notes": notes,
        "resampled": resampled,
    }


def slice_spacing_note(
    spacings: Mapping[str, tuple[float, ...]], slice_spacing: float | None, resampled: Collection[str] = ()
) -> str | None:
    """What to know when scored cases (case -> `(row, col, slice)` spacing in mm) lie off a depth-branch
    model's training `slice_spacing` (`slice_spacing.spacings_differ`): those in `resampled` were resampled to
    it, as `msa-hf predict` does; the others were shown as the dataset holds them. None where none lies off."""
    from msa_hf.inference.slice_spacing import spacings_differ

    off = {case: float(s[2]) for case, s in spacings.items() if spacings_differ(float(s[2]), slice_spacing)}
    if not off:
        return None

    def listed(cases: Collection[str]) -> str:
        return ", ".join(f"{value:g}" for value in sorted({off[case] for case in cases}))

    as_is = [case for case in off if case not in resampled]
    says = []
    if len(as_is) < len(off):
        says.append(
            f"{len(off) - len(as_is)} of {len(spacings)} cases have slices "
            f"{listed([case for case in off if case in resampled])} mm apart, and the model's depth branch was "
            f"trained on {slice_spacing:g} mm: evaluate resampled them along the slice axis to {slice_spacing:g} mm, "
            "as msa-hf predict does, and scored the masks on each case's own slices."
        )
    if as_is:
        says.append(
            f"{len(as_is)} of {len(spacings)} cases have slices {listed(as_is)} mm apart, and the model's depth "
            f"branch was trained on {slice_spacing:g} mm: evaluate showed it their slices as the dataset holds "
            f"them (--no-resample-slices), where msa-hf predict resamples them to {slice_spacing:g} mm."
        )
    return " ".join(says)
