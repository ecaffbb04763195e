# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The paper's evaluation protocols on a prepared dataset, scored per case and per structure.

Protocols (`decoding.PROTOCOLS`): `box`, `points1` / `points3` / `points10` (the paper's 1-, 3- and 10-point
prompts; the first click is the most interior point, the rest uniform inside the target), and `iterative`
(one click, then a click on the largest error each round, with the previous logits as the mask prompt;
Dice after each click and the clicks needed to reach 0.85 / 0.90).

Scoring (docs/method.md): logits are resized back to each slice's original size (crop the padding, bilinear,
threshold at 0 = sigmoid 0.5), the slices of a case are stacked, and Dice, IoU, HD95 and NSD are computed
per (case, structure) with the case's spacing, then averaged over cases. Only slices containing the
structure are prompted (a user prompts what they see), so false positives on other slices are not counted:
the tables say "slice-prompted".
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from msa_hf.evaluation.decoding import PROTOCOLS as PROTOCOLS
from msa_hf.evaluation.decoding import MaskDecoding, canonical_protocol, decode_protocols
from msa_hf.evaluation.metrics import dice, iou, summarise, surface_metrics
from msa_hf.inference.placement import Placement, resolve_placement
from msa_hf.processing.mask_outputs import logits_to_original_mask

NSD_TOLERANCE_MM = 2.0


@dataclass
class CaseScore:
    """Metrics of one structure in one case."""

    case_id: str
    class_name: str
    dice: float | None
    iou: float | None
    hd95: float | None
    nsd: float | None
    dice_per_click: list[float] = field(default_factory=list)


@torch.no_grad()
def predict_protocols(
    model: Any,
    dataset: Any,
    protocols: Sequence[str],
    batch_size: int = 16,
    clicks: int = 5,
    placement: Placement | None = None,
):
    """Predictions of every protocol for every row of a binary-task dataset (with a deterministic
    `SamSegmentationTransform` giving at least as many clicks as the protocols need, and boxes). Each batch
    is read and encoded once; the protocols differ only in their prompts.

    Yields `(case_id, slice, class_name, {protocol: predicted masks}, target)` per row at the original
    size; the iterative protocol has one mask per click. Images are encoded `batch_size` at a time on
    `placement`'s device under its autocast (default: where the model is, float32); prompts decode in float32.
    """
    protocols = [canonical_protocol(p) for p in protocols]
    from msa_hf.data.tasks import collate_ragged

    if placement is None:
        placement = Placement(model.device, torch.float32)
    model.to(placement.device).eval()
    decode = MaskDecoding(model)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_ragged)
    for batch in tqdm(loader, desc=f"evaluate {', '.join(protocols)}", unit="batch", leave=False):
        pixel_values = batch["pixel_values"]
        size = pixel_values.shape[-1]
        decode.set_image_embeddings(placement.encode(model, pixel_values))
        prompts = {
            key: batch[key].to(placement.device) for key in ("input_boxes", "input_points", "input_labels")
        }
        rounds_of = decode_protocols(decode, protocols, prompts, batch["labels"][:, 0], clicks)
        for index in range(len(pixel_values)):
            original = batch["original_sizes"][index]
            reshaped = batch["reshaped_input_sizes"][index]
            masks = {
                protocol: [
                    logits_to_original_mask(r[index, 0], size, reshaped, original).cpu().numpy()
                    for r in rounds
                ]
                for protocol, rounds in rounds_of.items()
            }
            yield (
                batch["case_id"][index],
                int(batch["slice"][index]),
                batch["class_name"][index],
                masks,
                np.asarray(batch["target_original"][index]),
            )


def score_cases(predictions, spacing_of: dict[str, tuple[float, float, float]]) -> list[CaseScore]:
    """Stack slice predictions per (case, structure) and score them (see the module docstring)."""
    grouped: dict[tuple[str, str], list[tuple[int, list[np.ndarray], np.ndarray]]] = defaultdict(list)
    for case_id, slice_index, class_name, masks, target in predictions:
        grouped[(case_id, class_name)].append((slice_index, masks, target))
    scores = []
    for (case_id, class_name), rows in sorted(grouped.items()):
        rows.sort(key=lambda r: r[0])
        target = np.stack([t for _, _, t in rows]).astype(bool)
        final = np.stack([m[-1] for _, m, _ in rows])
        per_click = [
            dice(np.stack([m[k] for _, m, _ in rows]), target) or 0.0 for k in range(len(rows[0][1]))
        ]
        spacing = spacing_of.get(case_id, (1.0, 1.0, 1.0))
        scores.append(case_score(case_id, class_name, final, target, spacing, per_click))
    return scores


def case_score(
    case_id: str,
    class_name: str,
    prediction: np.ndarray,
    target: np.ndarray,
    spacing: tuple[float, float, float],
    dice_per_click: list[float] | None = None,
) -> CaseScore:
    """Every metric of one structure in one case: `prediction` and `target` are `(Z, H, W)` slice stacks,
    `spacing` the case's (row, col, slice) voxel spacing in mm. The surface distances are computed once
    for HD95 and NSD."""
    volume_spacing = (spacing[2], spacing[0], spacing[1])  # (slice, row, col) for (Z, H, W) stacks
    hd, nsd = surface_metrics(prediction, target, NSD_TOLERANCE_MM, volume_spacing)
    return CaseScore(
        case_id=case_id,
        class_name=class_name,
        dice=dice(prediction, target),
        iou=iou(prediction, target),
        hd95=hd,
        nsd=nsd,
        dice_per_click=list(dice_per_click or []),
    )


def summarise_by_class(scores: list[CaseScore]) -> dict[str, dict[str, float]]:
    """Per structure: mean Dice, IoU, HD95 (finite cases), NSD over cases, and the case count."""
    table: dict[str, dict[str, float]] = {}
    for class_name in sorted({s.class_name for s in scores}):
        rows = [s for s in scores if s.class_name == class_name]
        finite_hd = [s.hd95 for s in rows if s.hd95 is not None and np.isfinite(s.hd95)]
        table[class_name] = {
            "dice": summarise(s.dice for s in rows).mean,
            "iou": summarise(s.iou for s in rows).mean,
            "hd95": float(np.mean(finite_hd)) if finite_hd else float("nan"),
            "nsd": summarise(s.nsd for s in rows).mean,
            "cases": len(rows),
        }
    return table


def clicks_to_reach(scores: list[CaseScore], threshold: float) -> float:
    """Mean number of clicks until Dice >= `threshold` (cases that never reach it count the maximum + 1)."""
    counts = []
    for score in scores:
        reached = [k + 1 for k, d in enumerate(score.dice_per_click) if d >= threshold]
        counts.append(reached[0] if reached else len(score.dice_per_click) + 1)
    return float(np.mean(counts)) if counts else float("nan")


def markdown_table(results: dict[str, dict[str, dict[str, float]]], metric: str = "dice") -> str:
    """Rows = structures (+ mean), columns = runs/protocols: the layout of the paper's Tables 1-3."""
    columns = list(results)
    classes = sorted({c for table in results.values() for c in table})
    lines = ["| structure | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for class_name in classes:
        cells = [results[c].get(class_name, {}).get(metric, float("nan")) for c in columns]
        lines.append(f"| {class_name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    means = [
        np.nanmean([t[metric] for t in results[c].values()]) if results[c] else float("nan") for c in columns
    ]
    lines.append("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
    return "\n".join(lines)


def write_results(
    output_dir: str | Path, report: dict[str, Any], scores: dict[str, list[CaseScore]], description: str
) -> None:
    """`results.json` (`report`), `results.md` (Dice and HD95 tables of `report["tables"]`, titled with
    `description`) and one `cases_<protocol>.csv` per protocol of `scores` in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(report, indent=2))
    tables = report["tables"]
    (output_dir / "results.md").write_text(
        f"Dice per structure ({description})\n\n{markdown_table(tables)}\n\n"
        f"HD95 (mm)\n\n{markdown_table(tables, 'hd95')}\n"
    )
    for protocol, protocol_scores in scores.items():
        write_case_csv(protocol_scores, output_dir / f"cases_{protocol}.csv")


def write_case_csv(scores: list[CaseScore], path: str | Path) -> None:
    """One row per (case, structure) with every metric."""
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "class_name", "dice", "iou", "hd95_mm", "nsd", "dice_per_click"])
        for s in scores:
            writer.writerow(
                [
                    s.case_id,
                    s.class_name,
                    s.dice,
                    s.iou,
                    s.hd95,
                    s.nsd,
                    " ".join(f"{d:.4f}" for d in s.dice_per_click),
                ]
            )


def evaluation_tasks(
    dataset_dir: str | Path, split: str, image_size: int, window: Any = None, classes: str | None = None
) -> Any:
    """Binary-task rows of `split` (of the structures `classes` names, default all; see
    `select_class_names`) with deterministic prompts (10 clicks, the first most interior; the tight box) and
    the original-size target, for every protocol."""
    from msa_hf.data import (
        PromptSampling,
        SamSegmentationTransform,
        load_prepared,
        read_class_names,
        select_class_names,
        to_binary_tasks,
    )

    slices = load_prepared(dataset_dir)
    if split not in slices:
        raise ValueError(f"{dataset_dir} has no {split!r} split (it has {list(slices)}).")
    class_names = select_class_names(read_class_names(dataset_dir), classes)
    tasks = to_binary_tasks(slices[split], class_names, image_size=image_size)
    prompts = PromptSampling(num_positive=10, click_strategy="interior", use_box=True, box_jitter=0.0)
    tasks.set_transform(
        SamSegmentationTransform(
            image_size=image_size, prompts=prompts, deterministic=True, keep_original_mask=True, window=window
        )
    )
    return tasks


def evaluate_model(
    model: Any,
    dataset_dir: str | Path,
    split: str = "test",
    protocols: Sequence[str] = ("box", "points1", "points3", "iterative"),
    output_dir: str | Path | None = None,
    clicks: int = 5,
    overlays: int = 8,
    batch_size: int = 16,
    classes: str | None = None,
    window: str | tuple[float, float] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> dict[str, Any]:
    """Run `protocols` on `split` (the structures `classes` names, default all). `device` / `dtype`: see
    `resolve_placement` (default: CUDA with a bf16 encoder when there is a GPU, else the CPU in float32). Returns `{"tables":
    {protocol: per-class table}, "iterative": {...}}` and, with `output_dir`, writes results.json, results.md,
    per-case CSVs, overlays.png and dice_vs_clicks.png. `window`: the CT window the model was trained with
    (its `MsaProcessor`'s; `None`: the modality default)."""
    from msa_hf.evaluation.pictures import overlay, overlay_grid, plot_curves

    image_size = model.config.vision_config.image_size
    tasks = evaluation_tasks(dataset_dir, split, image_size, window=window, classes=classes)
    plain = tasks.with_format(None)
    spacing_of = {
        row["case_id"]: tuple(row["spacing"]) for row in plain.select_columns(["case_id", "spacing"])
    }
    tables: dict[str, dict[str, dict[str, float]]] = {}
    report: dict[str, Any] = {"split": split, "tables": tables, "rows": len(tasks)}
    all_scores: dict[str, list[CaseScore]] = {}
    first_predictions: list[np.ndarray] = []
    placement = resolve_placement(device, dtype)
    rows = list(predict_protocols(model, tasks, protocols, batch_size, clicks, placement))
    for protocol in protocols:
        predictions = [
            (case, index, name, masks[protocol], target) for case, index, name, masks, target in rows
        ]
        if not first_predictions:
            first_predictions = [masks[-1] for *_, masks, _ in predictions[:overlays]]
        scores = score_cases(predictions, spacing_of)
        all_scores[protocol] = scores
        tables[protocol] = summarise_by_class(scores)
        if protocol == "iterative":
            per_click = np.mean([s.dice_per_click for s in scores], axis=0).tolist() if scores else []
            report["iterative"] = {
                "dice_per_click": per_click,
                "clicks_to_0.85": clicks_to_reach(scores, 0.85),
                "clicks_to_0.90": clicks_to_reach(scores, 0.90),
            }
    if output_dir is not None:
        output_dir = Path(output_dir)
        write_results(
            output_dir, report, all_scores, f"{split} split, per case then averaged, slice-prompted"
        )
        if first_predictions:
            tiles, captions = [], []
            for index, prediction in enumerate(first_predictions):
                row = plain[index]
                tiles.append(
                    overlay(np.asarray(row["image"]), prediction, np.asarray(row["mask"]).astype(bool))
                )
                captions.append(f"{row['case_id']}/{row['slice']} {row['class_name']}")
            overlay_grid(tiles, captions).save(output_dir / "overlays.png")
        if "iterative" in report:
            plot_curves({"Dice": report["iterative"]["dice_per_click"]}, output_dir / "dice_vs_clicks.png")
    return report


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
) -> dict[str, Any]:
    """3-D (depth branch): one-click Dice per organ on whole volumes reassembled from windows, for the
    structures `classes` names (names or label values, comma-separated; default all). With `output_dir`,
    writes results.json, results.md (Dice and HD95 tables) and cases_volume_points1.csv there. `window`:
    the CT window the model was trained with (its `MsaProcessor`'s; `None`: the modality default).

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
        select_class_names,
    )
    from msa_hf.data.volume_windows import reassemble_volume

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
    windows = VolumeWindowDataset(slices, depth, class_names, stride=stride, transform=transform)
    plain = slices.with_format(None)
    predictions: dict[tuple[str, int], list[tuple[Any, torch.Tensor]]] = defaultdict(list)
    placement = resolve_placement(device, dtype)
    model.to(placement.device).eval()
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
        target = label_volumes[case_id] == value
        volume = (
            # slices outside every window of this structure got no click: background (-1 vote)
            reassemble_volume(
                [w for w, _ in parts], [p for _, p in parts], num_slices=len(target), uncovered=-1.0
            ).numpy()
            > 0
        )
        scores.append(case_score(case_id, class_names[value], volume, target, spacings[case_id]))
    tables = {"volume_points1": summarise_by_class(scores)}
    if output_dir is not None:
        write_results(
            output_dir,
            {"split": split, "depth": depth, "stride": stride or depth, "tables": tables},
            {"volume_points1": scores},
            f"{split} split, whole volumes, one click per slice, windows of {depth} slices",
        )
    return {"split": split, "depth": depth, "tables": tables, "scores": scores}
