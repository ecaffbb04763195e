# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`make propagation`: 3-D interaction measured on the embedded data's test volumes, as a committed table.

    python -m benchmarks.propagation --model tiny --model runs/msa-mni152/model --model runs/depth-mni152/model

For every test case (a slab of consecutive slices) and structure, the simulated user of `msa-hf evaluate
--protocols volume_propagation` (`msa_hf.evaluation.volume_propagation`): one click on the slice where the
structure is largest, propagated through the slab, then two corrections on the slice most wrong, propagated
again from every seed so far. Dice is over the whole slab. Each protocol runs with the previous slice's logits
carried as the mask prompt, and with boxes alone (the older propagation), for each model.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from msa_hf.evaluation.metrics.segmentation import dice
from msa_hf.evaluation.volume_propagation import DEFAULT_CORRECTIONS, propagate_with_corrections

CORRECTIONS = DEFAULT_CORRECTIONS


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
    """One click, then `CORRECTIONS` corrections, on the structure `target` `(N, H, W)` (the simulated user of
    `msa-hf evaluate --protocols volume_propagation`); Dice after each."""
    rounds = propagate_with_corrections(predictor, target, CORRECTIONS, carry_logits=carry)
    first, *after = (_dice(masks, target) for masks in rounds)
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
