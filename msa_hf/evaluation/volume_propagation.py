# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The 3-D protocol of interactive use: one click, propagation through the volume, then corrections.

This is how a volume is segmented in `msa-hf predict --propagate` and the demo: a click on one slice gives a
seed mask, `VolumePredictor` carries it up and down the volume, and the user corrects the slice that is most
wrong and propagates again from every seed so far. The simulated user:

1. clicks the most interior pixel of the structure on the slice where it is largest (the evaluation
   protocols' click rule), and propagates that slice's mask;
2. for each correction, on the slice with the most wrong pixels, clicks the most interior pixel of its
   largest error (positive where the structure was missed, negative where it was over-segmented), together
   with a positive click on the structure where that slice shows it, with the slice's current logits as the
   mask prompt (SAM's correction round); the corrected slice becomes a seed (or, where the correction
   cleared it, a slice no walk may fill) and the volume is propagated again from every seed.

A correction that leaves nothing to correct ends the rounds early; the later rounds keep the same masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from msa_hf.processing.prompts import most_interior_point, sample_error_click

# corrections after the first click: three rounds in all, where one-click propagation and two corrections
# tell a reader how much the first answer is worth and how fast it improves
DEFAULT_CORRECTIONS = 2


def _click(region: np.ndarray) -> list[float]:
    """A click on the most interior pixel of `region` `(H, W)`, as `[x, y]`."""
    return [float(v) for v in most_interior_point(region)]


def propagate_with_corrections(
    predictor: Any, target: np.ndarray, corrections: int = DEFAULT_CORRECTIONS, carry_logits: bool = True
) -> list[np.ndarray]:
    """The masks a simulated user gets on one structure `target` `(N, H, W)` of the volume set on
    `predictor` (a `VolumePredictor`): after the first click's propagation, then after each of `corrections`
    correction rounds. `carry_logits`: propagate with each previous slice's logits as the mask prompt (the
    default of predict and the demo), or with boxes alone.

    Returns:
        `corrections + 1` masks `(N, H, W)` bool. An empty `target` gets empty masks: nothing to click.
    """
    from msa_hf.inference.predictor import Prompt

    target = np.asarray(target, dtype=bool)
    empty_masks = np.zeros(target.shape, bool)
    if not target.any():
        return [empty_masks] * (corrections + 1)
    seeds: dict[int, np.ndarray] = {}
    logits: dict[int, np.ndarray] = {}
    cleared: set[int] = set()
    low_res: dict[int, np.ndarray] = {}

    def propagated() -> np.ndarray:
        nonlocal low_res
        if not seeds:
            low_res = {}
            return empty_masks
        result = predictor.propagate_seeds(
            seeds, carry_logits=carry_logits, seed_logits=logits or None, empty_slices=cleared
        )
        low_res = result.low_res
        return result.masks

    seed_slice = int(np.argmax(target.sum(axis=(1, 2))))
    seed = predictor.predict_masks(seed_slice, Prompt(points=[_click(target[seed_slice])]))
    if seed.mask.any():
        seeds[seed_slice] = seed.mask
        if carry_logits:
            logits[seed_slice] = seed.low_res[seed.best]
    rounds = [propagated()]
    for _ in range(corrections):
        masks = rounds[-1]
        errors = masks ^ target
        if not errors.any():  # nothing left to correct
            rounds.append(masks)
            continue
        worst = int(np.argmax(errors.sum(axis=(1, 2))))
        error = sample_error_click(masks[worst], target[worst])
        points, labels = [[float(v) for v in error.point]], [error.label]
        if target[worst].any():
            points, labels = [_click(target[worst]), *points], [1, *labels]
        current = low_res.get(worst, logits.get(worst)) if carry_logits else None
        corrected = predictor.predict_masks(
            worst, Prompt(points=points, labels=labels), multimask=False, mask_prompt=current
        )
        if corrected.mask.any():
            seeds[worst] = corrected.mask
            cleared.discard(worst)
            if carry_logits:
                logits[worst] = corrected.low_res[corrected.best]
        else:  # the correction cleared the slice: no walk may fill it again
            seeds.pop(worst, None)
            logits.pop(worst, None)
            cleared.add(worst)
        rounds.append(propagated())
    return rounds
