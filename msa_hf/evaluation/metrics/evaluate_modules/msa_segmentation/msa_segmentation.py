# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`evaluate` module for msa_hf's segmentation metrics: Dice, IoU, HD95 and NSD with voxel spacing.

Load it by path (nothing comes from the Hub):

    import evaluate, msa_hf.evaluation.metrics
    metric = evaluate.load(msa_hf.evaluation.metrics.EVALUATE_MODULE)
    metric.compute(predictions=[mask_a], references=[target_a], spacing=[0.8, 0.8], nsd_tolerance_mm=2.0)

`evaluate` copies this file into its cache, so it imports msa_hf absolutely (no relative imports).
"""

import datasets
import evaluate
import numpy as np

from msa_hf.evaluation.metrics import dice, iou, summarise, surface_metrics

_DESCRIPTION = "Dice, IoU, HD95 (mm) and normalised surface Dice of binary masks, averaged over cases."
_KWARGS_DESCRIPTION = """
Args:
    predictions: binary masks, one per case (2-D lists of 0/1).
    references: ground-truth masks, same shapes.
    spacing: pixel spacing in mm (one value per axis), default 1.
    nsd_tolerance_mm: NSD tolerance, default 2.0.
Returns:
    dice, iou, hd95, nsd: means over cases where defined; empty_on_empty: cases with both masks empty.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MsaSegmentation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("uint8"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("uint8"))),
                }
            ),
        )

    def _compute(self, predictions, references, spacing=None, nsd_tolerance_mm=2.0):
        pairs = [
            (np.asarray(p, dtype=bool), np.asarray(r, dtype=bool))
            for p, r in zip(predictions, references, strict=True)
        ]
        dices = summarise(dice(p, r) for p, r in pairs)
        surface = [surface_metrics(p, r, nsd_tolerance_mm, spacing) for p, r in pairs]  # distances once
        finite = [h for h, _ in surface if h is not None and np.isfinite(h)]
        return {
            "dice": dices.mean,
            "iou": summarise(iou(p, r) for p, r in pairs).mean,
            "hd95": float(np.mean(finite)) if finite else float("nan"),
            "nsd": summarise(n for _, n in surface).mean,
            "empty_on_empty": dices.empty_on_empty,
        }
