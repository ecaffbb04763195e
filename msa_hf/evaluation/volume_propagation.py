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
    predictor: Any,
    target: np.ndarray,
    corrections: int = DEFAULT_CORRECTIONS,
    carry_logits: bool = True,
    resampling: Any = None,
) -> list[np.ndarray]:
    """The masks a simulated user gets on one structure `target` `(N, H, W)` of the volume set on
    `predictor` (a `VolumePredictor`): after the first click's propagation, then after each of `corrections`
    correction rounds. `carry_logits`: propagate with each previous slice's logits as the mask prompt (the
    default of predict and the demo), or with boxes alone. `resampling`: the case's `SliceResampling` where
    `predictor` holds it on a depth-branch model's grid (and `target` is on that grid, the user clicking what
    the model's slices show): each round comes back on the case's own slices as predict brings a propagation
    back, its probabilities (the seeds' own on their slices) interpolated and kept above one half.

    Returns:
        `corrections + 1` masks `(N, H, W)` bool (`(resampling.input_count, H, W)` with `resampling`). An empty
        `target` gets empty masks: nothing to click.
    """
    from msa_hf.inference.predictor import Prompt

    target = np.asarray(target, dtype=bool)
    empty_masks = np.zeros(target.shape, bool)
    if resampling is not None and len(target) != resampling.model_count:
        raise ValueError(
            f"target has {len(target)} slices; on the model's grid of {resampling.describe()} it has "
            f"{resampling.model_count}."
        )
    shown = empty_masks if resampling is None else np.zeros((resampling.input_count, *target.shape[1:]), bool)
    if not target.any():
        return [shown] * (corrections + 1)
    seeds: dict[int, np.ndarray] = {}
    seed_maps: dict[int, np.ndarray] = {}  # each seed's probability map, for bringing a round back
    logits: dict[int, np.ndarray] = {}
    cleared: set[int] = set()
    low_res: dict[int, np.ndarray] = {}

    def propagated() -> tuple[np.ndarray, np.ndarray]:
        """This round's masks on the model's grid, and as the user gets them back."""
        nonlocal low_res
        if not seeds:
            low_res = {}
            return empty_masks, shown
        result = predictor.propagate_seeds(
            seeds,
            carry_logits=carry_logits,
            seed_logits=logits or None,
            empty_slices=cleared,
            keep_probabilities=resampling is not None,
        )
        low_res = result.low_res
        if resampling is None:
            return result.masks, result.masks
        probabilities = result.probabilities
        for index, seed_map in seed_maps.items():
            probabilities[index] = seed_map
        return result.masks, resampling.probabilities_to_input(probabilities) > 0.5

    def add_seed(index: int, prediction: Any) -> None:
        seeds[index] = prediction.mask
        cleared.discard(index)
        if resampling is not None:
            seed_maps[index] = prediction.probabilities_of(prediction.best)
        if carry_logits:
            logits[index] = prediction.low_res[prediction.best]

    seed_slice = int(np.argmax(target.sum(axis=(1, 2))))
    seed = predictor.predict_masks(seed_slice, Prompt(points=[_click(target[seed_slice])]))
    if seed.mask.any():
        add_seed(seed_slice, seed)
    masks, back = propagated()
    rounds = [back]
    for _ in range(corrections):
        errors = masks ^ target
        if not errors.any():  # nothing left to correct
            rounds.append(rounds[-1])
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
            add_seed(worst, corrected)
        else:  # the correction cleared the slice: no walk may fill it again
            for kept in (seeds, seed_maps, logits):
                kept.pop(worst, None)
            cleared.add(worst)
        masks, back = propagated()
        rounds.append(back)
    return rounds
