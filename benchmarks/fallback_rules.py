# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`python -m benchmarks.fallback_rules`: which rule should decide when the base answers (`--base-fallback`).

A model with the base fallback decodes every prompt twice, adapted and as the base, and keeps one answer per
prompt. The shipped rule keeps the adapted answer when a positive click lies inside it
(`msa_hf.modeling.base_fallback.follows_prompt`). This benchmark replays other rules on the models that
`make retention` trained with `--base-fallback` (runs/retention/fallback-s<seed>, no training here) and scores
each on the adapted structures, the held-out one (both on the validation split, where a rule is chosen, and
the test split) and the base's synthetic held-out pictures, beside the adapted model alone and the base
alone (zero-shot). Box prompts are judged the same way by every rule (at least `BOX_SHARE` of the answer
inside the box); the rules differ on clicks.

    python -m benchmarks.fallback_rules            # seeds 0 1 2, about 7 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.models.sam.modeling_sam import SamImageSegmentationOutput

from benchmarks.retention import add_run_arguments, gain_kept, held_out_kept, run_folder, written_by
from msa_hf.modeling.base_fallback import best_scoring_masks, choose_answers, clicks_inside, follows_prompt
from msa_hf.modeling.modeling_msa import SamAdapterModel

Answers = SamImageSegmentationOutput
Rule = Callable[[Answers, Answers, dict[str, Any], int], Answers]
# a rule's choice alone, `(B, P)`: True keeps the adapted answer
Choice = Callable[[Answers, Answers, dict[str, Any], int], torch.Tensor]
CLASSES = "deep_grey_left,deep_grey_right,white_matter_left,white_matter_right"
HELD_OUT = "ventricles"
PROTOCOLS = ("points1", "iterative")


def _chosen(adapted: Answers, base: Answers, keep_adapted: torch.Tensor, scores: torch.Tensor | None = None):
    return Answers(
        pred_masks=choose_answers(adapted.pred_masks, base.pred_masks, keep_adapted),
        iou_scores=choose_answers(
            adapted.iou_scores if scores is None else scores, base.iou_scores, keep_adapted
        ),
    )


def _answer(answers: Answers) -> torch.Tensor:
    """`(B, P, h, w)` bool: each prompt's answer, its best-scoring mask (what the rules judge)."""
    return best_scoring_masks(answers.pred_masks, answers.iou_scores) > 0


def _clicks_in_answer(answers: Answers, prompts: dict[str, Any], size: int) -> torch.Tensor:
    """`(B, P, N)` bool: which of the prompt's clicks lie inside its answer."""
    return clicks_inside(_answer(answers), size, prompts["input_points"])


def _positives_inside(
    answers: Answers, prompts: dict[str, Any], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, P)` positive clicks inside the best-scoring mask, and `(B, P)` positive clicks."""
    positive = prompts["input_labels"] == 1
    return (_clicks_in_answer(answers, prompts, size) & positive).sum(-1), positive.sum(-1)


def _box_followed(adapted: Answers, prompts: dict[str, Any], size: int) -> torch.Tensor:
    return follows_prompt(adapted.pred_masks, adapted.iou_scores, size, input_boxes=prompts["input_boxes"])


def _follows(adapted: Answers, prompts: dict[str, Any], size: int) -> torch.Tensor:
    return follows_prompt(adapted.pred_masks, adapted.iou_scores, size, prompts["input_points"],
                          prompts["input_labels"], prompts["input_boxes"])  # fmt: skip


def _shipped_choice(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> torch.Tensor:
    """`(B, P)`: whether the shipped rule keeps the adapted answer."""
    return _follows(adapted, prompts, size)


def shipped(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """A positive click inside the adapted answer (what `--base-fallback` does)."""
    return _chosen(adapted, base, _shipped_choice(adapted, base, prompts, size))


def every_click(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """Every positive click inside the adapted answer."""
    if prompts["input_points"] is None:
        return shipped(adapted, base, prompts, size)
    inside, positives = _positives_inside(adapted, prompts, size)
    keep = (inside == positives) & (positives > 0)
    if prompts["input_boxes"] is not None:
        keep &= _box_followed(adapted, prompts, size)
    return _chosen(adapted, base, keep)


def as_many_as_the_base(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """A positive click inside the adapted answer, and no fewer positive clicks inside it than in the base's."""
    keep = _follows(adapted, prompts, size)
    if prompts["input_points"] is not None:
        keep &= _positives_inside(adapted, prompts, size)[0] >= _positives_inside(base, prompts, size)[0]
    return _chosen(adapted, base, keep)


def any_adapted_mask(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """A single click: the best-scoring of the adapted model's three masks that holds a positive click (not
    only the best-scoring mask); otherwise the shipped rule."""
    masks = adapted.pred_masks.shape[2]
    if prompts["input_points"] is None or masks == 1:
        return shipped(adapted, base, prompts, size)
    each = torch.stack(
        [
            follows_prompt(
                adapted.pred_masks[:, :, m : m + 1],
                adapted.iou_scores[:, :, m : m + 1],
                size,
                prompts["input_points"],
                prompts["input_labels"],
                prompts["input_boxes"],
            )
            for m in range(masks)
        ],
        dim=-1,
    )  # fmt: skip  (B, P, M)
    scores = adapted.iou_scores.masked_fill(~each, torch.finfo(adapted.iou_scores.dtype).min)
    return _chosen(adapted, base, each.any(-1), scores)


def _follows_or_lies_inside_the_base_answer(
    adapted: Answers, base: Answers, prompts: dict[str, Any], size: int
) -> torch.Tensor:
    """`(B, P)`: the shipped rule's choice, or a non-empty adapted answer lying (>= 90%) inside the base's."""
    keep = _shipped_choice(adapted, base, prompts, size)
    own, theirs = _answer(adapted), _answer(base)
    area = own.flatten(2).sum(-1)
    return keep | (((own & theirs).flatten(2).sum(-1) >= 0.9 * area) & (area > 0))


def inside_the_base_answer(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """The shipped rule, or an adapted answer lying (>= 90%) inside the base's answer to the same prompt (both
    see the same object; the adapted answer is its adapted extent)."""
    return _chosen(adapted, base, _follows_or_lies_inside_the_base_answer(adapted, base, prompts, size))


def near_a_click(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """A positive click inside the adapted answer or within one low-resolution pixel of it (the mask decoder
    answers at a quarter of the input's resolution, so it cannot place an edge more finely than that)."""
    if prompts["input_points"] is None:
        return shipped(adapted, base, prompts, size)
    own = _answer(adapted)
    grown = torch.nn.functional.max_pool2d(own.float().flatten(0, 1)[:, None], 3, 1, 1)[:, 0] > 0
    positive = prompts["input_labels"] == 1
    inside = clicks_inside(grown.view_as(own), size, prompts["input_points"])
    keep = (inside & positive).any(-1) & own.flatten(2).any(-1)
    if prompts["input_boxes"] is not None:
        keep &= _box_followed(adapted, prompts, size)
    return _chosen(adapted, base, keep)


def inside_the_answer_as_shown(
    adapted: Answers, base: Answers, prompts: dict[str, Any], size: int
) -> Answers:
    """A positive click inside the adapted answer as a user sees it: its best mask's logits upsampled
    (bilinear, as the answer is shown) and read at the clicked input pixel, not the low-resolution pixel under
    the click."""
    if prompts["input_points"] is None:
        return shipped(adapted, base, prompts, size)
    logits = best_scoring_masks(adapted.pred_masks, adapted.iou_scores)  # (B, P, h, w)
    batch, prompt_count, height, width = logits.shape
    # the centre of the clicked input pixel in grid_sample's [-1, 1] frame (align_corners=False, as upsampling)
    grid = (prompts["input_points"].to(logits.dtype) + 0.5) / size * 2 - 1  # (B, P, N, 2)
    sampled = torch.nn.functional.grid_sample(
        logits.reshape(batch * prompt_count, 1, height, width),
        grid.reshape(batch * prompt_count, 1, -1, 2),
        mode="bilinear",
        align_corners=False,
    ).reshape(batch, prompt_count, -1)  # (B, P, N)
    positive = prompts["input_labels"] == 1
    keep = ((sampled > 0) & positive).any(-1) & (logits > 0).flatten(2).any(-1)
    if prompts["input_boxes"] is not None:
        keep &= _box_followed(adapted, prompts, size)
    return _chosen(adapted, base, keep)


def continues_the_previous_round(
    adapted: Answers, base: Answers, prompts: dict[str, Any], size: int
) -> Answers:
    """The shipped rule, or, in a correction round (a mask prompt: the previous round's answer), the adapted
    answer where it overlaps that previous answer at least as well as the base's does (IoU): whichever model
    answered a session so far goes on answering its corrections."""
    keep = _follows(adapted, prompts, size)
    previous = prompts.get("input_masks")
    if previous is not None:
        previous = previous > 0  # (B, 1 or P, h, w)
        own, theirs = _answer(adapted), _answer(base)

        def overlap(masks: torch.Tensor) -> torch.Tensor:
            joint = (masks & previous).flatten(2).sum(-1).float()
            return joint / (masks | previous).flatten(2).sum(-1).clamp(min=1)

        keep |= (overlap(own) >= overlap(theirs)) & own.flatten(2).any(-1)
    return _chosen(adapted, base, keep)


class FirstClickDecides:
    """A session rule: `first_click` (a `(B, P)` choice: True keeps the adapted answer) judges a session's
    first click, and the model it chose answers every correction round of that session (a round with a mask
    prompt) whatever its answer holds: the object is routed once, where its first click is.

    Replay only: the rule remembers the choice of the last call without a mask prompt and applies it to the
    calls with one, which is the order in which the evaluation decodes a batch (its one-click round, then that
    batch's correction rounds, prompt for prompt in the same order). A correction round with no remembered
    choice of its shape is judged as a first click.
    """

    def __init__(self, first_click: Choice) -> None:
        self.first_click = first_click
        self.session: torch.Tensor | None = None

    def __call__(self, adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
        opened = self.session
        if (
            prompts.get("input_masks") is None
            or opened is None
            or opened.shape != adapted.iou_scores.shape[:2]
        ):
            keep = self.first_click(adapted, base, prompts, size)
            if prompts.get("input_masks") is None and prompts["input_points"] is not None:
                self.session = keep
            return _chosen(adapted, base, keep)
        return _chosen(adapted, base, opened)


def _clicks_agreeing(answers: Answers, prompts: dict[str, Any], size: int) -> torch.Tensor:
    """`(B, P)`: the prompt's clicks the best-scoring mask agrees with (positive inside, negative outside)."""
    inside = _clicks_in_answer(answers, prompts, size)
    labels = prompts["input_labels"]
    return ((inside & (labels == 1)) | (~inside & (labels == 0))).sum(-1)


def agrees_with_no_fewer_clicks(
    adapted: Answers, base: Answers, prompts: dict[str, Any], size: int
) -> Answers:
    """The shipped rule, and the adapted answer agrees with no fewer of the clicks than the base's does (a
    positive click inside, a negative one outside): in a correction round, every click has a say."""
    keep = _follows(adapted, prompts, size)
    if prompts["input_points"] is not None:
        keep &= _clicks_agreeing(adapted, prompts, size) >= _clicks_agreeing(base, prompts, size)
    return _chosen(adapted, base, keep)


def agrees_with_more_clicks(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """The shipped rule, or a (non-empty) adapted answer that agrees with more of the clicks than the base's
    does: a correction round may hand the session back to the adapted model."""
    keep = _follows(adapted, prompts, size)
    if prompts["input_points"] is not None:
        more = _clicks_agreeing(adapted, prompts, size) > _clicks_agreeing(base, prompts, size)
        keep |= more & _answer(adapted).flatten(2).any(-1)
    return _chosen(adapted, base, keep)


def adapted_alone(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """The adapted answer, always (adaptation without retention)."""
    return adapted


def base_alone(adapted: Answers, base: Answers, prompts: dict[str, Any], size: int) -> Answers:
    """The base's answer, always (zero-shot)."""
    return base


ADAPTED_ALONE, BASE_ALONE = "adapted alone", "base alone (zero-shot)"  # every share is measured against these
RULES: dict[str, Rule] = {
    ADAPTED_ALONE: adapted_alone,
    BASE_ALONE: base_alone,
    "a click inside (shipped)": shipped,
    "every click inside": every_click,
    "as many clicks inside as the base": as_many_as_the_base,
    "best adapted mask holding the click": any_adapted_mask,
    "inside the base's answer": inside_the_base_answer,
    "a click within one mask pixel": near_a_click,
    "a click inside the answer as shown": inside_the_answer_as_shown,
    "the model that answered the previous round": continues_the_previous_round,
    "no fewer clicks agree with the adapted answer": agrees_with_no_fewer_clicks,
    "more clicks agree with the adapted answer": agrees_with_more_clicks,
    "the first click's model answers the session": FirstClickDecides(_shipped_choice),
    "the first click's model answers the session, judged as inside the base's answer": FirstClickDecides(
        _follows_or_lies_inside_the_base_answer
    ),
}


class RuleReplay(SamAdapterModel):
    """A fallback model whose choice between its two answers is `rule` (the benchmark's, not the shipped one)."""

    rule: Rule = staticmethod(shipped)

    def _fallback_answers(self, adapted: Answers, base: Answers, prompts: dict[str, Any]) -> Answers:
        return self.rule(adapted, base, prompts, self.config.vision_config.image_size)


def _mean_dice(report: dict[str, Any], protocol: str) -> float:
    return float(np.mean([row["dice"] for row in report["tables"][protocol].values()]))


def scores(model: RuleReplay, dataset: str, split: str) -> dict[str, float]:
    """Mean Dice per protocol over the adapted structures and of the held-out one on `split`."""
    from msa_hf.evaluation.protocols import evaluate_model

    out = {}
    for name, classes in (("adapted", CLASSES), ("held-out", HELD_OUT)):
        report = evaluate_model(model, dataset, split, PROTOCOLS, classes=classes, device="cpu")
        for protocol in PROTOCOLS:
            out[f"{split} {name} {protocol}"] = _mean_dice(report, protocol)
    return out


def fallback_models(runs: Path, seeds: list[int]) -> dict[int, Path]:
    """Per seed, the model folder of the `--base-fallback` run of `make retention` under `runs`; exits naming
    the seeds' folders that hold no model."""
    folders = {seed: run_folder(runs, "fallback", seed) / "model" for seed in seeds}
    missing = [str(folder) for folder in folders.values() if not (folder / "config.json").is_file()]
    if missing:
        raise SystemExit(
            f"no fallback model in {missing}: run `python -m benchmarks.retention --settings fallback`."
        )
    return folders


def fallback_models_named(seeds: list[int]) -> str:
    """How the results files name the models `fallback_models` finds (whatever seeds they were trained for)."""
    return (
        "the `--base-fallback` models that `python -m benchmarks.retention` trained "
        f"(seeds {', '.join(map(str, seeds))})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m benchmarks.fallback_rules`."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fallback_rules", description=__doc__.splitlines()[0]
    )
    add_run_arguments(parser)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/fallback-rules.md"))
    parser.add_argument(
        "--rules", nargs="+", choices=list(RULES),
        help="default: every rule; the adapted model alone and the base alone always run (the shares are of them)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rules = {
        name: RULES[name]
        for name in RULES
        if args.rules is None or name in args.rules or name in (ADAPTED_ALONE, BASE_ALONE)
    }
    from msa_hf.base_model.held_out import evaluate_prompted_segmentation, held_out_set, samples_at_size
    from msa_hf.training.test_report import SYNTHETIC_HELD_OUT_SAMPLES

    folders = fallback_models(args.runs, args.seeds)
    pictures = held_out_set(SYNTHETIC_HELD_OUT_SAMPLES)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in rules}
    for seed, folder in folders.items():
        model = RuleReplay.from_pretrained(folder).eval()
        images, masks = samples_at_size(*pictures, model.config.vision_config.image_size)
        for name, rule in rules.items():
            model.rule = rule
            row = {**scores(model, args.dataset, "validation"), **scores(model, args.dataset, "test")}
            synthetic = evaluate_prompted_segmentation(model, images, masks)
            row.update({f"synthetic {protocol}": synthetic[protocol] for protocol in PROTOCOLS})
            rows[name].append(row)
            print(f"[fallback rules] seed {seed} {name}: {row}", flush=True)
    table = summarise(rows, args.seeds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    command = written_by(parser, args, ("seeds", "rules"))
    args.output.write_text(f"Written by `{command}`.\n\n{table}\n")
    print(table)
    return 0


def summarise(rows: dict[str, list[dict[str, float]]], seeds: list[int]) -> str:
    """Markdown: per rule the mean Dice over seeds per split, structures and protocol, and the smallest share
    over seeds of the zero-shot held-out Dice and of the adapted model's gain over zero-shot that it keeps."""
    adapted, base = rows[ADAPTED_ALONE], rows[BASE_ALONE]
    columns = [f"{structures} {protocol}" for structures in ("adapted", "held-out") for protocol in PROTOCOLS]
    models = fallback_models_named(seeds)
    lines = [
        f"{models[0].upper()}{models[1:]}, each rule replayed on the same weights: mean Dice over "
        "seeds; *kept* is the smallest share over seeds (held-out: of the base's Dice; gain: of the adapted "
        "model's gain over the base on the adapted structures). 1 = one click, it = iterative.",
        "",
    ]
    for split in ("validation", "test"):
        lines += [
            f"**{split} split**" + (" and the base's synthetic held-out pictures" if split == "test" else ""),
            "",
            "| rule | adapted 1 | adapted it | held-out 1 | held-out it | held-out kept 1 / it | gain kept 1 / it |"
            + (" synthetic 1 | synthetic it |" if split == "test" else ""),
            "|---|" + "---:|" * (8 if split == "test" else 6),
        ]
        for name, runs in rows.items():
            cells = [f"{np.mean([r[f'{split} {c}'] for r in runs]):.3f}" for c in columns]
            kept = []
            for kind, reference in (("held-out", None), ("adapted", adapted)):
                shares = []
                for protocol in PROTOCOLS:
                    key = f"{split} {kind} {protocol}"
                    values = []
                    for index, run in enumerate(runs):
                        zero = base[index][key]
                        if reference is None:
                            values.append(held_out_kept(run[key], zero))
                        else:
                            values.append(gain_kept(run[key] - zero, reference[index][key] - zero))
                    shares.append(f"{min(values):.2f}")
                kept.append(" / ".join(shares))
            synthetic = (
                [f"{np.mean([r[f'synthetic {p}'] for r in runs]):.3f}" for p in PROTOCOLS]
                if split == "test"
                else []
            )
            lines.append(f"| {name} | " + " | ".join(cells + kept + synthetic) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
