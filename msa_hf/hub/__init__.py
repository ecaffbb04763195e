# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The Hub side: `msa-hf push` (model, adapter, dataset, Space), model cards and their templates (`cards/`),
and several task adapters on one base."""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{
            name: "push"
            for name in (
                "PushPlan",
                "push_run",
                "dataset_push_plan",
                "default_dataset_repo_id",
                "push_dataset",
                "SPACE_APP",
                "DEFAULT_SERVING",
                "render_space_card",
                "push_space",
            )
        },
        "load_task_adapters": "task_adapters",
    },
)
