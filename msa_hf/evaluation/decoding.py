# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The evaluation core: one protocol vocabulary, one decode function, one interactive round.

Every evaluator (validation during training, the base model's gate, `msa-hf evaluate`) encodes a batch once
and hands its embeddings and prompts to `decode_protocols`; they differ only in their data and in the frame
they score in.

Protocols (docs/training-and-evaluation.md):
- `box`: the box prompt, one mask.
- `points1`, `points3`, `points10`: the first 1, 3 or 10 clicks of the prompt set. One click asks for SAM's
  three masks and keeps the one the IoU head ranks highest (a single click is ambiguous); more clicks ask
  for one mask.
- `iterative`: `points1`, then `clicks - 1` rounds of `error_click_round` (a click on the largest error plus
  the previous logits as the mask prompt). It yields one prediction per click.

Whole volumes (`VOLUME_PROTOCOLS`, `volume_evaluation.evaluate_volumes`), scored per case on the volume:
- `volume_points1`: one click on every slice that shows the structure, the depth branch seeing each window of
  D slices at once.
- `volume_propagation`: one click on the slice where the structure is largest, propagated through the volume,
  then correction rounds on the slice most wrong, propagated again (`volume_propagation`), as a user of
  `msa-hf predict --propagate` or the demo works.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the vocabulary above the classes stays importable without torch (the CLI's choices)
    import torch

PROTOCOLS = ("box", "points1", "points3", "points10", "iterative")
VOLUME_PROTOCOLS = ("volume_points1", "volume_propagation")
RENAMED_PROTOCOLS = {"click1": "points1", "click3": "points3"}


def canonical_protocol(name: str) -> str:
    """`name` in the protocol vocabulary; the older spellings `click1`/`click3` are accepted with a
    deprecation warning, anything else is an error naming the choices."""
    if name in RENAMED_PROTOCOLS:
        warnings.warn(
            f"protocol {name!r} is now called {RENAMED_PROTOCOLS[name]!r}; the old name will be removed.",
            DeprecationWarning,
            stacklevel=3,
        )
        return RENAMED_PROTOCOLS[name]
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use any of {PROTOCOLS}.")
    return name


def clicks_of(protocol: str) -> int:
    """How many clicks of the prompt set a protocol starts from (0 for `box`)."""
    if protocol == "box":
        return 0
    return 1 if protocol == "iterative" else int(protocol.removeprefix("points"))


class MaskDecoding:
    """Decodes prompts on cached image embeddings: `ClickDecoder` where it applies (it gives the model's
    masks, faster), the model's own forward otherwise (peft-wrapped models, text prompts).

    Example:
        >>> decoding = MaskDecoding(model)
        >>> decoding.set_image_embeddings(model.get_image_embeddings(pixel_values))
        >>> logits = decoding(input_boxes=boxes, multimask_output=False)  # (B, 1, h, w)
    """

    def __init__(self, model: Any) -> None:
        from msa_hf.inference.click_decoder import click_decoder_for

        self.model = model
        self.click_decoder = click_decoder_for(model)
        self.image_embeddings: torch.Tensor | None = None
        self.extra_prompts: dict[str, torch.Tensor] = {}

    def set_image_embeddings(
        self, image_embeddings: torch.Tensor, extra_prompts: dict[str, torch.Tensor] | None = None
    ) -> None:
        """`(B, C, h, w)` embeddings of the batch the next calls decode on, and prompts added to every call
        on it (e.g. `text_embeddings`, which only the model's forward takes)."""
        self.image_embeddings = image_embeddings
        self.extra_prompts = dict(extra_prompts or {})
        if self.click_decoder is not None and not self.extra_prompts:
            self.click_decoder.set_image_embedding(image_embeddings)

    def __call__(self, **prompts: Any) -> torch.Tensor:
        """`(B, 1, h, w)` low-resolution logits of the best mask (by the IoU head) for `prompts`."""
        from msa_hf.processing.mask_outputs import best_mask_logits

        if self.click_decoder is not None and not self.extra_prompts:
            pred_masks, iou_scores = self.click_decoder(**prompts)
            return best_mask_logits(SimpleNamespace(pred_masks=pred_masks, iou_scores=iou_scores))
        return best_mask_logits(
            self.model(image_embeddings=self.image_embeddings, **self.extra_prompts, **prompts)
        )


def decode_protocols(
    decode: MaskDecoding,
    protocols: Sequence[str],
    prompts: dict[str, torch.Tensor],
    targets: torch.Tensor | None = None,
    clicks: int = 5,
) -> dict[str, list[torch.Tensor]]:
    """Every protocol's predictions for one encoded batch.

    Args:
        decode: a `MaskDecoding` holding the batch's embeddings.
        protocols: names from `PROTOCOLS`.
        prompts: `input_boxes (B, 1, 4)` for `box`; `input_points (B, 1, K, 2)` and `input_labels (B, 1, K)`
            with K at least the largest point count asked for. On the model's device.
        targets: `(B, S, S)` ground truth at the model's input size; needed by `iterative` (error clicks).
        clicks: total clicks of `iterative` (the first click plus `clicks - 1` error clicks).
    Returns:
        `{protocol: [(B, 1, h, w) logits per round]}`: one round, or `clicks` rounds for `iterative`.
    """
    from msa_hf.processing.prompts import error_click_round

    rounds_of: dict[str, list[torch.Tensor]] = {}
    first_click: torch.Tensor | None = None
    for protocol in protocols:
        count = clicks_of(protocol)
        if protocol == "box":
            rounds_of[protocol] = [decode(input_boxes=prompts["input_boxes"], multimask_output=False)]
            continue
        available = prompts["input_points"].shape[2]
        if available < count:
            raise ValueError(f"{protocol} needs {count} clicks per prompt; the prompts have {available}.")
        current = {"input_points": prompts["input_points"][:, :, :count],
                   "input_labels": prompts["input_labels"][:, :, :count]}  # fmt: skip
        if count == 1 and first_click is not None:  # points1 and iterative start from the same click
            rounds = [first_click]
        else:
            rounds = [decode(**current, multimask_output=count == 1)]
        if count == 1:
            first_click = rounds[0]
        if protocol == "iterative":
            if targets is None:
                raise ValueError("the iterative protocol needs the targets (its error clicks aim at them).")
            for _ in range(clicks - 1):
                current = error_click_round(rounds[-1], targets, current)
                rounds.append(decode(**current, multimask_output=False))
        rounds_of[protocol] = rounds
    return rounds_of
