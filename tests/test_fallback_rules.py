"""The fallback-rule benchmark: each rule chooses as its docstring says on hand-made answers, and replaying the
shipped rule reproduces the model's own answers."""

from __future__ import annotations

import numpy as np
import torch
from transformers.models.sam.modeling_sam import SamImageSegmentationOutput as Answers

from benchmarks.fallback_rules import (
    FirstClickDecides,
    RuleReplay,
    adapted_alone,
    agrees_with_more_clicks,
    agrees_with_no_fewer_clicks,
    any_adapted_mask,
    as_many_as_the_base,
    base_alone,
    continues_the_previous_round,
    every_click,
    inside_the_answer_as_shown,
    inside_the_base_answer,
    near_a_click,
    shipped,
)
from benchmarks.fallback_rules import _follows_or_lies_inside_the_base_answer as follows_or_lies_inside
from benchmarks.fallback_rules import _shipped_choice as shipped_choice

SIZE = 64  # 8 x 8 low-resolution pixels of 8 x 8 input pixels each


def _answers(*pictures: np.ndarray, scores: list[float] | None = None) -> Answers:
    """One image, one prompt, M = len(pictures) masks (+1 inside, -1 outside)."""
    logits = torch.tensor(np.stack(pictures), dtype=torch.float32) * 2 - 1
    iou = torch.tensor([scores or [1.0] * len(pictures)])
    return Answers(pred_masks=logits[None, None], iou_scores=iou[None])


def _picture(rows: slice, columns: slice) -> np.ndarray:
    picture = np.zeros((8, 8), bool)
    picture[rows, columns] = True
    return picture


def _clicks(*clicks: tuple[float, float, int]) -> dict[str, torch.Tensor | None]:
    points = torch.tensor([[[[x, y] for x, y, _ in clicks]]])
    labels = torch.tensor([[[label for *_, label in clicks]]])
    return {"input_points": points, "input_labels": labels, "input_boxes": None}


def _is_adapted(chosen: Answers, adapted: Answers) -> bool:
    return torch.equal(chosen.pred_masks, adapted.pred_masks)


def test_each_rule_chooses_as_it_says():
    left, right = _picture(slice(2, 5), slice(0, 3)), _picture(slice(2, 5), slice(4, 8))  # x 0..23, 32..63
    both = left | right
    adapted, base = _answers(left), _answers(both)
    one_inside = _clicks((10, 30, 1))
    two_clicks = _clicks((10, 30, 1), (40, 30, 1))  # the second lies only in the base's answer
    assert _is_adapted(shipped(adapted, base, two_clicks, SIZE), adapted)
    assert not _is_adapted(every_click(adapted, base, two_clicks, SIZE), adapted)
    assert _is_adapted(every_click(adapted, base, one_inside, SIZE), adapted)
    assert not _is_adapted(as_many_as_the_base(adapted, base, two_clicks, SIZE), adapted)
    assert _is_adapted(as_many_as_the_base(adapted, base, one_inside, SIZE), adapted)
    # a click just outside the adapted answer: only "inside the base's answer" keeps it (it lies in the base's)
    beside = _clicks((40, 30, 1))
    assert not _is_adapted(shipped(adapted, base, beside, SIZE), adapted)
    assert _is_adapted(inside_the_base_answer(adapted, base, beside, SIZE), adapted)
    assert not _is_adapted(inside_the_base_answer(adapted, _answers(right), beside, SIZE), adapted)
    # three masks, the best-scoring one misses the click: the best of those that hold it answers
    three = _answers(right, left, both, scores=[0.9, 0.2, 0.5])
    chosen = any_adapted_mask(three, base, one_inside, SIZE)
    assert _is_adapted(chosen, three) and chosen.iou_scores[0, 0].argmax().item() == 2
    assert not _is_adapted(shipped(three, base, one_inside, SIZE), three)
    assert _is_adapted(adapted_alone(adapted, base, beside, SIZE), adapted)
    assert base_alone(adapted, base, beside, SIZE) is base
    # a click one low-resolution pixel beside the adapted answer (x 24..31) is near it; two pixels is not
    assert _is_adapted(near_a_click(adapted, base, _clicks((28, 30, 1)), SIZE), adapted)
    assert not _is_adapted(near_a_click(adapted, base, _clicks((36, 30, 1)), SIZE), adapted)
    # a correction round: the previous answer was the adapted one, whose new answer leaves the positive click
    # out; the shipped rule hands it to the base, the session rule keeps the model that answered before
    correction = {**beside, "input_masks": torch.tensor(left * 2.0 - 1)[None, None]}
    assert not _is_adapted(shipped(adapted, base, correction, SIZE), adapted)
    assert _is_adapted(continues_the_previous_round(adapted, base, correction, SIZE), adapted)
    correction["input_masks"] = torch.tensor(both * 2.0 - 1)[None, None]  # the base answered before
    assert not _is_adapted(continues_the_previous_round(adapted, base, correction, SIZE), adapted)
    # every click has a say: a negative click on the base's extra half is outside the adapted answer only
    corrected = _clicks((10, 30, 1), (40, 30, 0))
    assert _is_adapted(agrees_with_no_fewer_clicks(adapted, base, corrected, SIZE), adapted)  # 2 against 1
    tie = agrees_with_no_fewer_clicks(adapted, base, one_inside, SIZE)  # one click each: a tie keeps it
    assert _is_adapted(tie, adapted)
    # the base's answer holds both positive clicks, the adapted one only the first: the base agrees more
    assert _is_adapted(shipped(adapted, base, two_clicks, SIZE), adapted)
    assert not _is_adapted(agrees_with_no_fewer_clicks(adapted, base, two_clicks, SIZE), adapted)
    # the adapted answer misses the positive click but agrees with both negatives, which the base holds
    negatives = _clicks((40, 30, 1), (10, 30, 0), (20, 20, 0))
    shifted = _answers(_picture(slice(0, 2), slice(6, 8)))  # x 48..63, y 0..15: away from every click
    assert not _is_adapted(shipped(shifted, base, negatives, SIZE), shifted)
    assert _is_adapted(agrees_with_more_clicks(shifted, base, negatives, SIZE), shifted)  # 2 against 1
    assert not _is_adapted(
        agrees_with_more_clicks(shifted, _answers(right), negatives, SIZE), shifted
    )  # 2 vs 3
    empty = _answers(np.zeros((8, 8), bool))
    assert not _is_adapted(agrees_with_more_clicks(shifted, empty, negatives, SIZE), shifted)  # 2 against 2
    assert not _is_adapted(agrees_with_more_clicks(empty, base, negatives, SIZE), empty)


def test_the_first_click_chooses_the_model_of_the_whole_session():
    left, right = _picture(slice(2, 5), slice(0, 3)), _picture(slice(2, 5), slice(4, 8))  # x 0..23, 32..63
    adapted, base = _answers(left), _answers(left | right)
    session = FirstClickDecides(shipped_choice)
    assert _is_adapted(session(adapted, base, _clicks((10, 30, 1)), SIZE), adapted)  # the first click: inside
    # a correction round whose adapted answer leaves its clicks out: the adapted model began, it goes on
    correction = {**_clicks((10, 30, 1), (40, 30, 1)), "input_masks": torch.ones(1, 1, 8, 8)}
    missing = _answers(right)
    assert not _is_adapted(shipped(missing, base, _clicks((10, 30, 1)), SIZE), missing)
    assert _is_adapted(session(missing, base, correction, SIZE), missing)
    # a session the base began stays the base's, even where a later adapted answer holds every click
    other = _answers(_picture(slice(0, 8), slice(4, 8)))  # the base's answer: x 32..63, every row
    assert not _is_adapted(session(adapted, other, _clicks((40, 30, 1)), SIZE), adapted)
    holding = _answers(left | right)
    assert _is_adapted(shipped(holding, other, correction, SIZE), holding)
    assert not _is_adapted(session(holding, other, correction, SIZE), holding)
    # a round of another shape than the remembered first click (two prompts) is judged as a first click
    two = Answers(pred_masks=holding.pred_masks.expand(1, 2, -1, -1, -1), iou_scores=torch.ones(1, 2, 1))
    pair = {
        key: value.expand(1, 2, *value.shape[2:]) for key, value in correction.items() if value is not None
    }
    assert _is_adapted(session(two, other, {**pair, "input_boxes": None}, SIZE), two)
    # judged as inside the base's answer, the first click beside the adapted answer keeps it for the session
    inside_first = FirstClickDecides(follows_or_lies_inside)
    assert _is_adapted(inside_first(adapted, base, _clicks((40, 30, 1)), SIZE), adapted)
    corner = _answers(_picture(slice(6, 8), slice(6, 8)))  # x, y 48..63: no click, not inside the base's
    assert not _is_adapted(inside_the_base_answer(corner, base, correction, SIZE), corner)
    assert _is_adapted(inside_first(corner, base, correction, SIZE), corner)


def test_the_answer_as_shown_is_read_between_low_resolution_pixels():
    # a confident column (logit 3) at low-resolution x = 2 (input x 16..23) among logits of -1: upsampled, the
    # answer reaches to input x = 26 (3 at the column's centre x = 20, -1 at the next centre x = 28)
    logits = -torch.ones(8, 8)
    logits[:, 2] = 3.0
    adapted = Answers(pred_masks=logits[None, None, None], iou_scores=torch.ones(1, 1, 1))
    base = _answers(np.ones((8, 8), bool))
    shown_beside = _clicks((25, 30, 1))  # upsampled logit 3 - 4 * 5.5 / 8 = 0.25: inside as shown
    assert _is_adapted(inside_the_answer_as_shown(adapted, base, shown_beside, SIZE), adapted)
    assert not _is_adapted(shipped(adapted, base, shown_beside, SIZE), adapted)  # low-resolution pixel 3
    outside = _clicks((27, 30, 1))  # 3 - 4 * 7.5 / 8 = -0.75
    assert not _is_adapted(inside_the_answer_as_shown(adapted, base, outside, SIZE), adapted)
    negative = _clicks((20, 30, 0))  # inside, but no positive click: the base answers
    assert not _is_adapted(inside_the_answer_as_shown(adapted, base, negative, SIZE), adapted)


def test_replaying_the_shipped_rule_gives_the_models_own_answers(fallback_pair, tmp_path):
    model, base = fallback_pair
    model.save_pretrained(tmp_path)
    replay = RuleReplay.from_pretrained(tmp_path).eval()
    size = model.config.vision_config.image_size
    grid = torch.arange(4, size, 8, dtype=torch.float32)
    inputs = {
        "pixel_values": torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)),
        "input_points": torch.cartesian_prod(grid, grid)[:, None][None],
        "input_labels": torch.ones(1, len(grid) ** 2, 1).long(),
    }
    with torch.no_grad():
        own, replayed = model(**inputs), replay(**inputs)
        replay.rule = base_alone
        based = replay(**inputs)
        from_base = base(**inputs)
    # float32's own tolerance: the two decode their batches in different sizes, which a CPU's matmul kernels
    # may sum in another order (bitwise equal on some CPUs, not all)
    torch.testing.assert_close(own.pred_masks, replayed.pred_masks)
    torch.testing.assert_close(own.iou_scores, replayed.iou_scores)
    assert (own.pred_masks - based.pred_masks).abs().max() > 0.1  # some prompts are the adapted model's
    torch.testing.assert_close(based.pred_masks, from_base.pred_masks)
