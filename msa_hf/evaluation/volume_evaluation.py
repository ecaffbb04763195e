# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Evaluation on whole volumes, scored per case with the case's spacing: one click per slice with the depth
branch seeing windows of D slices (`volume_points1`), and one click propagated through the volume with
corrections (`volume_propagation`), for depth-branch and 2-D models alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from msa_hf.evaluation.case_scores import case_score, case_spacings, clicks_to_reach, summarise_by_class
from msa_hf.evaluation.decoding import VOLUME_PROTOCOLS
from msa_hf.evaluation.metrics.segmentation import dice
from msa_hf.evaluation.results_files import write_results
from msa_hf.evaluation.volume_clicks import WindowClicks
from msa_hf.evaluation.volume_propagation import DEFAULT_CORRECTIONS, propagate_with_corrections
from msa_hf.inference.placement import compile_by_default, compile_image_encoder, resolve_placement
from msa_hf.output_files import check_not_an_input


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
    protocols: Sequence[str] = VOLUME_PROTOCOLS,
    corrections: int = DEFAULT_CORRECTIONS,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Dice per structure on whole volumes for `protocols` (`VOLUME_PROTOCOLS`), for the structures `classes`
    names (names or label values, comma-separated; default all). With `output_dir`, writes results.json,
    results.md (Dice and HD95 tables) and one cases_<protocol>.csv per protocol there. `window`: the CT window
    the model was trained with (its `MsaProcessor`'s; `None`: the modality default). `compile_encoder`:
    `torch.compile` the image encoder (None: where it pays, `compile_by_default`, counting every slice
    encoded). `slice_spacing`: the model's training slice spacing (its `MsaProcessor`'s).

    `volume_points1`: each window of D consecutive slices (`depth`, default the model's; `stride` apart) goes
    through the model at once; every slice showing the structure gets its most interior click, slices without
    it get none and count as background. Overlapping windows are averaged (`reassemble_volume`).
    `volume_propagation`: one click on the slice where the structure is largest, propagated through the
    volume, then `corrections` correction rounds (`volume_propagation.propagate_with_corrections`); the
    table scores the last round's masks, and each case's `dice_per_click` gives Dice after every round
    (the report's `volume_propagation` their mean). Dice/IoU/HD95/NSD are computed on the case's volume with
    its spacing. `batch_size`: slices encoded at once by the propagation (`VolumePredictor.encoding_batch`; None:
    its default).

    A case whose slices lie off `slice_spacing` (`spacings_differ`) is seen as `msa-hf predict` shows it the
    volume: resampled along its slice axis onto the model's grid (`ResampledCase`: images interpolated, each
    model slice clicked on its nearest input slice's label), its masks brought back onto its own slices (the
    windows' votes for `volume_points1`; for `volume_propagation` the propagation's probabilities, as predict
    brings them back) and scored against its own labels. `resample_slices=False` shows the model every case as
    the dataset holds it (the report's `notes` then say which cases lie off the model's spacing). The report's
    `resampled` gives each resampled case's grids, its `scores` each protocol's `CaseScore`s.
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
    from msa_hf.evaluation.resampled_cases import ResampledCase
    from msa_hf.inference.slice_spacing import SliceResampling
    from msa_hf.inference.volume_predictor import VolumePredictor

    protocols = check_volume_protocols(protocols)
    if isinstance(corrections, bool) or not isinstance(corrections, int) or corrections < 0:
        raise ValueError(f"corrections={corrections!r}: give a number of correction rounds, 0 or more.")
    if output_dir is not None:  # refused before the model runs, not after
        check_not_an_input(output_dir, [dataset_dir])
    depth = depth or getattr(model.config, "num_slices", 1)
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
    spacings = case_spacings(plain)
    if None in spacings.values():
        raise ValueError(
            f"{dataset_dir} holds 2-D pictures, and the whole-volume protocols ({', '.join(protocols)}) need "
            "volumes: evaluate a 2-D model on it with the per-slice protocols (--protocols box points1 points3 "
            "iterative)."
        )
    # rows per case from the small columns: a per-case `filter` would decode every image of the split once
    # per case (and datasets' `sort` warns under pyarrow 25)
    case_rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row, (case_id, slice_index) in enumerate(zip(plain["case_id"], plain["slice"], strict=True)):
        case_rows[case_id].append((slice_index, row))
    rows_of = {case_id: [row for _, row in sorted(rows)] for case_id, rows in case_rows.items()}
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
    clicked = "volume_points1" in protocols
    windows = (
        VolumeWindowDataset(as_is, depth, class_names, stride=stride, transform=transform, regions=regions)
        if clicked
        else None
    )
    placement = resolve_placement(device, dtype)
    model.to(placement.device).eval()

    def encoded_slices() -> int:  # resampled cases: their model slices once per structure, an upper bound
        grid = sum(r.model_count for r in resamplings.values()) + sum(
            len(rows) for case_id, rows in rows_of.items() if case_id not in resamplings
        )
        windows_slices = len(windows) * depth if clicked else 0
        return windows_slices + (grid if "volume_propagation" in protocols else 0)

    if compile_by_default(compile_encoder, placement, encoded_slices):
        compile_image_encoder(model)
    clicks = WindowClicks(model, placement)
    clicked_masks = (
        {
            key: case_votes > 0
            for key, case_votes in clicks.reassembled(windows, {case: len(rows) for case, rows in rows_of.items()}).items()
        }
        if clicked
        else {}
    )  # fmt: skip
    predictor = (
        VolumePredictor(model, window, device=placement.device, dtype=placement.dtype, batch_size=batch_size)
        if "volume_propagation" in protocols
        else None
    )
    scores: dict[str, list[Any]] = {protocol: [] for protocol in protocols}
    for case_id in tqdm(sorted(rows_of), desc="evaluate cases", unit="case", leave=False):
        # the case's columns, each decoded once (not once per structure, nor once per use); its images only
        # where they are shown again here (resampled, or propagated)
        columns = ["case_id", "modality", "labels_present", "label"]
        if case_id in resamplings or predictor is not None:
            columns.append("image")
        rows = plain.select(rows_of[case_id]).select_columns(columns)[:]
        case = ResampledCase.from_rows(rows, resamplings[case_id]) if case_id in resamplings else None
        if clicked and case is not None:  # shown to the model on its grid, scored on the case's own slices
            case_windows = VolumeWindowDataset(
                case, depth, class_names, stride=stride, transform=transform, regions=regions
            )
            for key, case_votes in clicks.reassembled(case_windows, {case_id: len(case)}).items():
                clicked_masks[key] = case.votes_to_input(case_votes)
        labels = np.stack([np.asarray(label) for label in rows["label"]])
        if predictor is not None:
            shown = case.images if case is not None else np.stack([np.asarray(i) for i in rows["image"]])
            predictor.set_volume(shown, rows["modality"][0])
        # every structure the case holds is scored: one no model slice shows (a thin structure between the
        # slices of a coarser grid) was not found
        present = structures_present(
            {v for values in rows["labels_present"] for v in values}, class_names, regions
        )
        for value in present:
            target = structure_mask(labels, value, regions)
            name, spacing = class_names[value], spacings[case_id]
            if clicked:
                predicted = clicked_masks.pop((case_id, value), np.zeros_like(target, dtype=bool))
                scores["volume_points1"].append(case_score(case_id, name, predicted, target, spacing))
            if predictor is not None:
                # the simulated user clicks what the model's slices show; the masks come back as predict's
                seen = structure_mask(case.labels, value, regions) if case is not None else target
                rounds = propagate_with_corrections(
                    predictor, seen, corrections, resampling=case.resampling if case is not None else None
                )
                per_round = [dice(mask, target) or 0.0 for mask in rounds]
                scores["volume_propagation"].append(
                    case_score(case_id, name, rounds[-1], target, spacing, per_round)
                )
    tables = {protocol: summarise_by_class(protocol_scores) for protocol, protocol_scores in scores.items()}
    volumes = {case: spacing for case, spacing in spacings.items() if len(rows_of[case]) > 1}  # not 2-D cases
    note = slice_spacing_note(volumes, slice_spacing, resampled=resamplings)
    notes = [note] if note else []
    resampled = {case_id: r.describe() for case_id, r in sorted(resamplings.items())}
    report: dict[str, Any] = {
        "split": split, "depth": depth, "stride": stride or depth, "tables": tables, "notes": notes,
        "resampled": resampled,
    }  # fmt: skip
    if predictor is not None:
        propagated = scores["volume_propagation"]
        report["volume_propagation"] = {
            "corrections": corrections,
            "dice_per_click": np.mean([s.dice_per_click for s in propagated], axis=0).tolist()
            if propagated
            else [],
            # as the iterative protocol reports: a case that never gets there counts the rounds + 1
            "clicks_to_0.85": clicks_to_reach(propagated, 0.85),
            "clicks_to_0.90": clicks_to_reach(propagated, 0.90),
        }
    if output_dir is not None:
        rules = []
        if clicked:
            rules.append(f"volume_points1: one click per slice, windows of {depth} slice{'s' * (depth != 1)}")
        if predictor is not None:
            rules.append(f"volume_propagation: one click propagated, then {corrections} corrections")
        write_results(
            output_dir, report, scores, f"{split} split, whole volumes; {'; '.join(rules)}",
            inputs=[dataset_dir], notes=notes,
        )  # fmt: skip
    return {**report, "scores": scores}


def check_volume_protocols(protocols: Sequence[str]) -> tuple[str, ...]:
    """`protocols` as a tuple of `VOLUME_PROTOCOLS`, in their order; an empty list or an unknown name is an
    error naming the choices."""
    unknown = [p for p in protocols if p not in VOLUME_PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(
            f"volume protocols {unknown or list(protocols)}: choose from {', '.join(VOLUME_PROTOCOLS)}."
        )
    return tuple(p for p in VOLUME_PROTOCOLS if p in protocols)


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
