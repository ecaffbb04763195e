# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""3-D evaluation of depth-branch models: one click per slice on whole volumes reassembled from windows of
D slices, scored per case with the case's spacing."""

from __future__ import annotations

from collections import defaultdict
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
) -> dict[str, Any]:
    """3-D (depth branch): one-click Dice per organ on whole volumes reassembled from windows, for the
    structures `classes` names (names or label values, comma-separated; default all). With `output_dir`,
    writes results.json, results.md (Dice and HD95 tables) and cases_volume_points1.csv there. `window`:
    the CT window the model was trained with (its `MsaProcessor`'s; `None`: the modality default).
    `compile_encoder`: `torch.compile` the image encoder (None: where it pays, `compile_by_default`, counting
    every window's D slices). `slice_spacing`: the model's training slice spacing (its `MsaProcessor`'s); where
    cases lie off it, the report's `notes` say so (`slice_spacing_note`).

    Each window of D consecutive slices goes through the model at once; every slice showing the organ gets
    its most interior click, slices without it get none and count as background. Overlapping windows are
    averaged (`reassemble_volume`), and Dice/IoU/HD95/NSD are computed on the case's volume with its spacing.
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
    from msa_hf.data.volume_windows import reassemble_volume

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
    windows = VolumeWindowDataset(
        slices, depth, class_names, stride=stride, transform=transform, regions=regions
    )
    plain = slices.with_format(None)
    predictions: dict[tuple[str, int], list[tuple[Any, torch.Tensor]]] = defaultdict(list)
    placement = resolve_placement(device, dtype)
    model.to(placement.device).eval()
    if compile_by_default(compile_encoder, placement, lambda: len(windows) * depth):
        compile_image_encoder(model)
    decode = MaskDecoding(model)
    for index, (depth_window, value) in enumerate(
        tqdm(windows.items, desc="evaluate volumes", unit="window", leave=False)
    ):
        item = windows[index]
        # the window's D slices are encoded at once (the depth branch sees them all), then each slice's click
        decode.set_image_embeddings(placement.encode(model, item["pixel_values"][None]))
        prompts = {key: item[key].to(placement.device) for key in ("input_points", "input_labels")}
        logits = decode_protocols(decode, ("points1",), prompts)["points1"][0][:, 0].cpu()  # (D, h, w)
        prompted = (item["input_labels"][:, 0] != -10).any(dim=1)
        logits[~prompted] = -100.0  # no click on this slice: the user saw no organ there
        height, width = (int(v) for v in item["original_sizes"])
        # each window votes +1 / -1 per pixel; overlapping windows are averaged, then thresholded at 0
        restored = torch.stack([
            torch.from_numpy(logits_to_original_mask(slice_logits, image_size, item["reshaped_input_sizes"], (height, width)).numpy())
            for slice_logits in logits
        ]).float() * 2 - 1  # fmt: skip
        predictions[(depth_window.case_id, value)].append((depth_window, restored))
    # each case's label stack and spacing, read once (not once per structure)
    label_volumes: dict[str, np.ndarray] = {}
    spacings: dict[str, tuple[float, ...]] = {}
    # rows per case from the two small columns: a per-case `filter` would decode every image of the split
    # once per case (and datasets' `sort` warns under pyarrow 25)
    case_rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, (case_id, slice_index) in enumerate(zip(plain["case_id"], plain["slice"], strict=True)):
        case_rows[case_id].append((slice_index, row))
    for case_id in {case for case, _ in predictions}:
        rows = plain.select([row for _, row in sorted(case_rows[case_id])])
        label_volumes[case_id] = np.stack([np.asarray(label) for label in rows["label"]])
        spacings[case_id] = tuple(rows[0]["spacing"])
    scores = []
    for (case_id, value), parts in sorted(predictions.items()):
        target = structure_mask(label_volumes[case_id], value, regions)
        volume = (
            # slices outside every window of this structure got no click: background (-1 vote)
            reassemble_volume(
                [w for w, _ in parts], [p for _, p in parts], num_slices=len(target), uncovered=-1.0
            ).numpy()
            > 0
        )
        scores.append(case_score(case_id, class_names[value], volume, target, spacings[case_id]))
    tables = {"volume_points1": summarise_by_class(scores)}
    note = slice_spacing_note(spacings, slice_spacing)
    notes = [note] if note else []
    if output_dir is not None:
        write_results(
            output_dir,
            {"split": split, "depth": depth, "stride": stride or depth, "tables": tables, "notes": notes},
            {"volume_points1": scores},
            f"{split} split, whole volumes, one click per slice, windows of {depth} slices",
            inputs=[dataset_dir],
            notes=notes,
        )
    return {"split": split, "depth": depth, "tables": tables, "scores": scores, "notes": notes}


def slice_spacing_note(spacings: dict[str, tuple[float, ...]], slice_spacing: float | None) -> str | None:
    """What to know when scored cases (case -> `(row, col, slice)` spacing in mm) lie off a depth-branch
    model's training `slice_spacing` (`slice_spacing.spacings_differ`): `evaluate` shows the model each
    case's slices as the dataset holds them, where `msa-hf predict` would resample them. None where none does."""
    from msa_hf.inference.slice_spacing import spacings_differ

    off = [float(s[2]) for s in spacings.values() if spacings_differ(float(s[2]), slice_spacing)]
    if not off:
        return None
    listed = ", ".join(f"{value:g}" for value in sorted(set(off)))
    return (
        f"{len(off)} of {len(spacings)} cases have slices {listed} mm apart, and the model's depth branch was trained "
        f"on {slice_spacing:g} mm: evaluate shows it each case's slices as the dataset holds them, where msa-hf "
        f"predict resamples them to {slice_spacing:g} mm. To score them as predict serves them, prepare the "
        f"dataset with --target-spacing X Y {slice_spacing:g}."
    )
