# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The model side of `volume_points1`: each window of D slices encoded at once, one click decoded per slice,
and the windows' votes averaged into one volume per case and structure."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from msa_hf.evaluation.decoding import MaskDecoding, decode_protocols
from msa_hf.inference.placement import Placement
from msa_hf.processing.mask_outputs import logits_to_original_mask


class WindowClicks:
    """One click per slice of `VolumeWindowDataset` items (`SamVolumeTransform`'s prompts: the most interior
    pixel of each slice that shows the structure), decoded by `model` on `placement`."""

    def __init__(self, model: Any, placement: Placement) -> None:
        self.model = model
        self.placement = placement
        self.image_size = model.config.vision_config.image_size
        self.decode = MaskDecoding(model)

    @torch.no_grad()
    def votes(self, item: dict[str, Any]) -> torch.Tensor:
        """`(D, H, W)` +1 / -1 per pixel of one window's item, on its slices' stored size `(H, W)`."""
        # the window's D slices are encoded at once (the depth branch sees them all), then each slice's click
        self.decode.set_image_embeddings(self.placement.encode(self.model, item["pixel_values"][None]))
        prompts = {key: item[key].to(self.placement.device) for key in ("input_points", "input_labels")}
        logits = decode_protocols(self.decode, ("points1",), prompts)["points1"][0][:, 0].cpu()  # (D, h, w)
        prompted = (item["input_labels"][:, 0] != -10).any(dim=1)
        logits[~prompted] = -100.0  # no click on this slice: the user saw no structure there
        original = tuple(int(v) for v in item["original_sizes"])
        masks = [
            logits_to_original_mask(slice_logits, self.image_size, item["reshaped_input_sizes"], original)
            for slice_logits in logits
        ]
        return torch.stack(masks).float() * 2 - 1

    def reassembled(self, dataset: Any, num_slices: dict[str, int]) -> dict[tuple[str, int], np.ndarray]:
        """(case, structure) -> `(num_slices[case], H, W)` float32: the mean vote of the windows of `dataset`
        (a `VolumeWindowDataset`) per slice, in [-1, 1]. Slices outside every window of a structure got no
        click: they vote -1 (background)."""
        from msa_hf.data.volume_windows import reassemble_volume

        parts: dict[tuple[str, int], list[tuple[Any, torch.Tensor]]] = defaultdict(list)
        for index, (window, value) in enumerate(
            tqdm(dataset.items, desc="evaluate volumes", unit="window", leave=False)
        ):
            parts[(window.case_id, value)].append((window, self.votes(dataset[index])))
        return {
            (case_id, value): reassemble_volume(
                [w for w, _ in found], [v for _, v in found], num_slices=num_slices[case_id], uncovered=-1.0
            ).numpy()
            for (case_id, value), found in parts.items()
        }
