# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The paper's evaluation protocols on a prepared dataset, scored per case and per structure.

Protocols (`decoding.PROTOCOLS`): `box`, `points1` / `points3` / `points10` (the paper's 1-, 3- and 10-point
prompts; the first click is the most interior point, the rest uniform inside the target), and `iterative`
(one click, then a click on the largest error each round, with the previous logits as the mask prompt;
Dice after each click and the clicks needed to reach 0.85 / 0.90).

Scoring (`case_scores`, docs/method.md): logits are resized back to each slice's original size (crop the padding, bilinear,
threshold at 0 = sigmoid 0.5), the slices of a case are stacked, and Dice, IoU, HD95 and NSD are computed
per (case, structure) with the case's spacing, then averaged over cases. Only slices containing the
structure are prompted (a user prompts what they see), so false positives on other slices are not counted:
the tables say "slice-prompted".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from msa_hf.evaluation.case_scores import (
    NSD_TOLERANCE_MM,
    CaseScore,
    case_score,
    case_spacings,
    clicks_to_reach,
    score_cases,
    summarise_by_class,
)
from msa_hf.evaluation.decoding import PROTOCOLS as PROTOCOLS
from msa_hf.evaluation.decoding import MaskDecoding, canonical_protocol, decode_protocols
from msa_hf.evaluation.results_files import markdown_table, write_case_csv, write_results
from msa_hf.evaluation.volume_evaluation import evaluate_volumes
from msa_hf.inference.placement import Placement, compile_by_default, compile_image_encoder, resolve_placement
from msa_hf.output_files import atomic_file, check_not_an_input
from msa_hf.processing.mask_outputs import logits_to_original_mask


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


def evaluation_tasks(
    dataset_dir: str | Path, split: str, image_size: int, window: Any = None, classes: str | None = None
) -> Any:
    """Binary-task rows of `split` (of the structures `classes` names, default all; see
    `select_class_names`) with deterministic prompts (10 clicks, the first most interior; the tight box) and
    the original-size target, for every protocol. A structure thinner than a model pixel at `image_size` is
    kept, prompted on the model pixels it covers (`SamSegmentationTransform.keep_thin_structures`)."""
    from msa_hf.data import (
        PromptSampling,
        SamSegmentationTransform,
        load_prepared,
        read_class_names,
        read_regions,
        select_class_names,
        to_binary_tasks,
    )

    slices = load_prepared(dataset_dir)
    if split not in slices:
        raise ValueError(f"{dataset_dir} has no {split!r} split (it has {list(slices)}).")
    class_names = select_class_names(read_class_names(dataset_dir), classes)
    # every structure a slice shows is scored: one thinner than a model pixel is prompted on the pixels it
    # covers, not dropped (which would leave the hardest targets out of the means)
    tasks = to_binary_tasks(slices[split], class_names, regions=read_regions(dataset_dir))
    prompts = PromptSampling(num_positive=10, click_strategy="interior", use_box=True, box_jitter=0.0)
    tasks.set_transform(
        SamSegmentationTransform(
            image_size=image_size,
            prompts=prompts,
            deterministic=True,
            keep_original_mask=True,
            keep_thin_structures=True,
            window=window,
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
    compile_encoder: bool | None = None,
) -> dict[str, Any]:
    """Run `protocols` on `split` (the structures `classes` names, default all). `device` / `dtype`: see
    `resolve_placement` (default: CUDA with a bf16 encoder when there is a GPU, else the CPU in float32);
    `compile_encoder`: `torch.compile` the image encoder (None: where it pays, `compile_by_default`, one
    image per row). Returns `{"tables":
    {protocol: per-class table}, "iterative": {...}}` (with "box", also "box_fill": the filled tight box, the
    baseline a box prompt must beat) and, with `output_dir`, writes results.json, results.md,
    per-case CSVs, overlays.png and dice_vs_clicks.png. `window`: the CT window the model was trained with
    (its `MsaProcessor`'s; `None`: the modality default)."""
    from msa_hf.evaluation.pictures import overlay, overlay_grid, plot_curves

    if output_dir is not None:  # refused before the model runs, not after
        check_not_an_input(output_dir, [dataset_dir])
    if isinstance(clicks, bool) or not isinstance(clicks, int) or clicks < 1:
        raise ValueError(f"clicks={clicks!r}: the iterative protocol needs at least one click.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: encode at least one image at a time.")
    image_size = model.config.vision_config.image_size
    tasks = evaluation_tasks(dataset_dir, split, image_size, window=window, classes=classes)
    plain = tasks.with_format(None)
    spacing_of = case_spacings(plain)
    tables: dict[str, dict[str, dict[str, float]]] = {}
    report: dict[str, Any] = {"split": split, "tables": tables, "rows": len(tasks)}
    all_scores: dict[str, list[CaseScore]] = {}
    first_predictions: list[np.ndarray] = []
    placement = resolve_placement(device, dtype)
    if compile_by_default(compile_encoder, placement, lambda: len(tasks)):
        compile_image_encoder(model)
    rows = list(predict_protocols(model, tasks, protocols, batch_size, clicks, placement))
    if "box" in protocols:  # the baseline a box result must beat: the tight box, filled
        from msa_hf.evaluation.metrics.batched import box_fill_masks

        for *_, masks, target in rows:
            masks["box_fill"] = [box_fill_masks(torch.from_numpy(target.astype(bool))[None])[0].numpy()]
    for protocol in (*protocols, "box_fill") if "box" in protocols else protocols:
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
            output_dir, report, all_scores, f"{split} split, per case then averaged, slice-prompted",
            inputs=[dataset_dir], distance_unit="pixels" if None in spacing_of.values() else "mm",
        )  # fmt: skip
        if first_predictions:
            tiles, captions = [], []
            for index, prediction in enumerate(first_predictions):
                row = plain[index]
                tiles.append(
                    overlay(np.asarray(row["image"]), prediction, np.asarray(row["mask"]).astype(bool))
                )
                captions.append(f"{row['case_id']}/{row['slice']} {row['class_name']}")
            with atomic_file(output_dir / "overlays.png") as staging:
                overlay_grid(tiles, captions).save(staging)
        if "iterative" in report:
            with atomic_file(output_dir / "dice_vs_clicks.png") as staging:
                plot_curves({"Dice": report["iterative"]["dice_per_click"]}, staging)
    return report


__all__ = [
    "NSD_TOLERANCE_MM",
    "PROTOCOLS",
    "CaseScore",
    "case_score",
    "clicks_to_reach",
    "evaluate_model",
    "evaluate_volumes",
    "evaluation_tasks",
    "markdown_table",
    "predict_protocols",
    "score_cases",
    "summarise_by_class",
    "write_case_csv",
    "write_results",
]
