# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Evaluation: the paper's prompt protocols on a prepared dataset (`protocols`), Dice/IoU/HD95/NSD
(`metrics`), mask files scored against label maps (`mask_files`), and pictures for people (`pictures`)."""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{
            name: "protocols"
            for name in (
                "PROTOCOLS",
                "NSD_TOLERANCE_MM",
                "CaseScore",
                "predict_protocols",
                "score_cases",
                "summarise_by_class",
                "clicks_to_reach",
                "markdown_table",
                "write_results",
                "write_case_csv",
                "evaluation_tasks",
                "evaluate_model",
                "evaluate_volumes",
            )
        },
        **{name: "metrics" for name in ("dice", "iou", "hd95", "normalized_surface_dice", "summarise")},
        **{name: "mask_files" for name in ("score_mask_files", "score_table", "write_scores")},
    },
)
