# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`make propagation`: 3-D interaction measured on the embedded data's test volumes, as a committed table.

    python -m benchmarks.propagation --model tiny --model runs/msa-mni152/model --model runs/depth-mni152/model

For every test case (a slab of consecutive slices) and structure: one click on the most interior pixel of the
slice where the structure is largest gives the seed mask, and `VolumePredictor.propagate` carries it through
the slab. Then two corrections: on the slice with the most wrong pixels, a click on the most interior pixel of
its largest error (positive where the structure was missed, negative where it was over-segmented) together
with a positive click on the structure and, when logits are carried, that slice's current logits as the mask
prompt (SAM's correction round), and the slab is propagated again from every seed so far (`propagate_seeds`). Dice is over the whole slab. Each protocol runs with the previous slice's logits carried
as the mask prompt, and with boxes alone (the older propagation), for each model.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.evaluation.metrics.segmentation import dice
from msa_hf.processing.prompts import most_interior_point, sample_error_click

CORRECTIONS = 2


def _click(region: np.ndarray) -> list[float]:
    """A click on the most interior pixel of `region` `(H, W)`, as `[x, y]` (the evaluation protocols' rule)."""
    return [float(v) for v in most_interior_point(region)]


def _dice(predicted: np.ndarray, target: np.ndarray) -> float:
    return dice(predicted, target) or 0.0  # targets are never empty here


def case_volumes(dataset: str, split: str) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """`(case_id, slices (N, H, W), labels (N, H, W), modality)` for each case of `split`, slices in order."""
    from msa_hf.data import load_prepared

    rows = load_prepared(dataset)[split]
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_case[row["case_id"]].append(row)
    volumes = []
    for case_id, items in sorted(by_case.items()):
        items.sort(key=lambda r: r["slice"])
        volumes.append((
            case_id, np.stack([np.asarray(r["image"]) for r in items]), np.stack([np.asarray(r["label"]) for r in items]),
            items[0].get("modality", "other"),
        ))  # fmt: skip
    return volumes


def segment_structure(predictor: Any, target: np.ndarray, carry: bool) -> tuple[float, list[float]]:
    """One click, then `CORRECTIONS` corrections, on the structure `target` `(N, H, W)`; Dice after each."""
    from msa_hf.inference.predictor import Prompt

    areas = target.sum(axis=(1, 2))
    seed_slice = int(np.argmax(areas))
    click = _click(target[seed_slice])
    seed = predictor.predict_masks(seed_slice, Prompt(points=[click]))
    if not seed.mask.any():
        return 0.0, [0.0] * CORRECTIONS
    seeds = {seed_slice: seed.mask}
    logits = {seed_slice: seed.low_res[seed.best]} if carry else None
    result = predictor.propagate_seeds(seeds, carry_logits=carry, seed_logits=logits)
    first = _dice(result.masks, target)
    after, empty = [], set()
    for _ in range(CORRECTIONS):
        errors = result.masks ^ target
        if not errors.any():  # nothing left to correct
            after.append(1.0)
            continue
        worst = int(np.argmax(errors.sum(axis=(1, 2))))
        # the simulated user's click on that slice's largest error (positive on a miss, negative on a leak),
        # as the iterative protocol clicks, with a positive click on the structure where the slice shows it
        error = sample_error_click(result.masks[worst], target[worst])
        points, labels = [[float(v) for v in error.point]], [error.label]
        if target[worst].any():
            points, labels = [_click(target[worst]), *points], [1, *labels]
        # SAM's correction round: the clicks, with the slice's current logits as the mask prompt
        current = result.low_res.get(worst, (logits or {}).get(worst)) if carry else None
        corrected = predictor.predict_masks(
            worst, Prompt(points=points, labels=labels), multimask=False, mask_prompt=current
        )
        if corrected.mask.any():
            seeds[worst] = corrected.mask
            empty.discard(worst)
            if carry:
                logits[worst] = corrected.low_res[corrected.best]
        else:  # the correction cleared the slice: no walk may fill it again
            seeds.pop(worst, None)
            empty.add(worst)
        if not seeds:
            after.append(0.0)
            continue
        result = predictor.propagate_seeds(seeds, carry_logits=carry, seed_logits=logits, empty_slices=empty)
        after.append(_dice(result.masks, target))
    return first, after


def measure(model_spec: str, dataset: str, split: str) -> dict[str, dict[str, float]]:
    """Mean Dice over cases and structures per protocol, with and without carried logits, for one model."""
    from msa_hf.data import read_class_names
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.inference.volume_predictor import VolumePredictor

    model, processor = load_for_inference(model_spec)
    names = read_class_names(dataset)
    out: dict[str, dict[str, float]] = {}
    for carry in (True, False):
        scores: dict[str, list[float]] = defaultdict(list)
        for _, slices, labels, modality in case_volumes(dataset, split):
            predictor = VolumePredictor(model, processor.window, device="cpu")
            predictor.set_volume(slices, modality)
            for value in names:
                target = labels == value
                if not target.any():
                    continue
                first, after = segment_structure(predictor, target, carry)
                scores["one click"].append(first)
                for index, value_after in enumerate(after, start=1):
                    scores[f"+{index} correction{'s' if index > 1 else ''}"].append(value_after)
        out["logits carried" if carry else "boxes only"] = {k: float(np.mean(v)) for k, v in scores.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.propagation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", action="append", required=True, help="a model to measure; repeat for more")
    parser.add_argument("--dataset", default="data/mni152-objects")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/propagation.md"))
    args = parser.parse_args(argv)
    lines = [
        f"Written by `python -m benchmarks.propagation` (`make propagation`) on {args.dataset}, {args.split} split: "
        "mean Dice over cases and structures of the whole propagated structure against its label.",
        "",
        "| model | depth branch | propagation | one click | +1 correction | +2 corrections |",
        "|---|---|---|---:|---:|---:|",
    ]
    from msa_hf.inference.loading import load_for_inference

    for spec in args.model:
        depth = bool(getattr(load_for_inference(spec)[0].config, "use_depth_branch", False))
        for mode, scores in measure(spec, args.dataset, args.split).items():
            cells = [f"{scores[k]:.3f}" for k in ("one click", "+1 correction", "+2 corrections")]
            lines.append(f"| {spec} | {'yes' if depth else 'no'} | {mode} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
