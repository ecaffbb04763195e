# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Trainable-parameter counts of MSA at the released SAM geometries, computed from configs.

Built on the meta device: no weights are allocated, so ViT-H costs nothing.
"""

from __future__ import annotations

import torch

from msa_hf.modeling.configuration_msa import SamAdapterConfig
from msa_hf.modeling.modeling_msa import SamAdapterModel

# Released SAM image encoders (segment-anything build_sam.py): width, depth, heads, global-attention blocks.
SAM_GEOMETRIES = {
    "ViT-B": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]
    ),
    "ViT-L": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, global_attn_indexes=[5, 11, 17, 23]
    ),
    "ViT-H": dict(
        hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]
    ),
}


def geometry_config(geometry: str, **adapter_settings) -> SamAdapterConfig:
    """`SamAdapterConfig` of a released SAM geometry (1024x1024 input) with the given adapter settings."""
    return SamAdapterConfig(vision_config=dict(SAM_GEOMETRIES[geometry]), **adapter_settings)


def parameter_rows() -> list[dict]:
    """One row per geometry and mode: total, trainable and share, for the paper's default setting."""
    rows = []
    for geometry in SAM_GEOMETRIES:
        for mode, settings in (("2-D", {}), ("3-D (depth branch)", {"use_depth_branch": True})):
            for decoder_training in ("full", "adapters"):
                with torch.device("meta"):
                    model = SamAdapterModel(
                        geometry_config(geometry, decoder_training=decoder_training, **settings)
                    )
                report = model.mark_only_adapters_as_trainable().trainable_parameter_report()
                rows.append(
                    dict(
                        geometry=geometry,
                        mode=mode,
                        decoder_training=decoder_training,
                        total=report.total,
                        trainable=report.trainable,
                        share=report.share,
                        by_group=report.by_group,
                    )
                )
    return rows


def parameter_table_markdown() -> str:
    """The README table (Markdown)."""
    lines = [
        "| geometry | input | decoder_training | total | trainable | share | encoder adapters | depth adapters | decoder adapters | decoder (full) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in parameter_rows():
        groups = row["by_group"]
        lines.append(
            f"| {row['geometry']} | {row['mode']} | {row['decoder_training']} | {row['total'] / 1e6:.1f} M "
            f"| {row['trainable'] / 1e6:.2f} M | {100 * row['share']:.2f}% "
            f"| {groups['encoder adapters'] / 1e6:.2f} M | {groups['depth adapters'] / 1e6:.2f} M "
            f"| {groups['decoder adapters'] / 1e6:.3f} M | {groups['decoder (full)'] / 1e6:.2f} M |"
        )
    return "\n".join(lines)
