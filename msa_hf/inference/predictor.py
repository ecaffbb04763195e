# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Label-free inference: `SegmentationPredictor` (encode once, decode per prompt, like SAM's predictor) and
`predict_file` behind `msa-hf predict`, which reads a PNG/JPEG/TIFF or one DICOM image, a NIfTI, NRRD or MetaImage
volume or a DICOM series and writes masks in the input's geometry (a volume's mask keeps the input's affine and voxel
order).

Prompts are in the input's own pixel coordinates: `(x, y)` = (column, row) of the image, or of the axial
display slice of a volume (anterior at the top, patient left on the left; see `msa_hf.data.volumes`).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from msa_hf.data.structure_files import PICTURE_SUFFIX, write_structure_folder
from msa_hf.data.volumes import volume_output_suffix
from msa_hf.inference.click_decoder import click_decoder_for
from msa_hf.inference.image_encoding import encode_pictures, image_to_pixel_values
from msa_hf.inference.placement import Placement, compile_by_default, compile_image_encoder, resolve_placement
from msa_hf.output_files import atomic_file, check_not_an_input
from msa_hf.processing.mask_outputs import logits_to_original_logits
from msa_hf.processing.prompts import resized_shape, to_model_frame

if TYPE_CHECKING:
    from msa_hf.data.channels import ChannelChoice

logger = logging.getLogger(__name__)


@dataclass
class Prompt:
    """One target's prompt: clicks `points` `[[x, y], ...]` with `labels` (1 positive, 0 negative) and/or a
    `box` `[x0, y0, x1, y1]`; `slice` picks the axial slice of a volume, and `propagate` carries that slice's
    mask through the volume (`msa_hf.inference.volume_predictor.VolumePredictor.propagate`); `text` describes the
    target in words (models trained with text prompts: `SamAdapterConfig.text_embedding_dim`). `value` is the
    label value its mask gets in the written label map (default: an earlier prompt's of the same name, case
    aside, so one structure may be prompted on several slices; else the prompt's position + 1), `name` the
    structure's name (a DICOM-SEG's segment label, an RT structure set's ROI name)."""

    points: list[list[float]] | None = None
    labels: list[int] | None = None
    box: list[float] | None = None
    slice: int | None = None
    propagate: bool = False
    text: str | None = None
    value: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        # checked here, where every prompt is made (command line, JSON file, Python, the demo), so a malformed
        # one is refused by name before the model runs
        if self.points is not None and not _is_list_of(self.points, lambda p: _numbers(p, 2)):
            raise ValueError(
                f"prompt points {str(self.points)[:80]}: expected [[x, y], ...] of finite numbers."
            )
        if self.box is not None and not _numbers(self.box, 4):
            raise ValueError(
                f"prompt box {str(self.box)[:80]}: expected [x0, y0, x1, y1], four finite numbers."
            )
        if self.text is not None and not isinstance(self.text, str):
            raise ValueError(f"prompt text {self.text!r}: expected a description in words.")
        if self.slice is not None and (isinstance(self.slice, bool) or not isinstance(self.slice, int)):
            raise ValueError(f"prompt slice {self.slice!r}: expected a slice number (an integer).")
        if self.value is not None and (
            isinstance(self.value, bool) or not isinstance(self.value, int) or not 1 <= self.value <= 65535
        ):
            raise ValueError(f"prompt value {self.value!r}: expected a label value from 1 to 65535.")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ValueError(f"prompt name {self.name!r}: expected the structure's name in words.")
        if not isinstance(self.propagate, bool):
            raise ValueError(f"prompt propagate {self.propagate!r}: expected true or false.")
        if not self.points and self.box is None and not self.text:
            raise ValueError("a prompt needs points, a box or a text.")
        if self.points:
            self.labels = list(self.labels) if self.labels is not None else [1] * len(self.points)
            valid = all(label in (0, 1) and not isinstance(label, bool | float) for label in self.labels)
            if len(self.labels) != len(self.points) or not valid:
                raise ValueError(
                    f"prompt labels {self.labels} must be 0/1, one per point ({len(self.points)})."
                )
            self.points = [[float(x), float(y)] for x, y in self.points]
        if self.box is not None:
            self.box = [float(v) for v in self.box]


def _numbers(values: Any, count: int) -> bool:
    """Whether `values` is a list (or tuple) of `count` finite numbers."""
    return (
        isinstance(values, list | tuple)
        and len(values) == count
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    )


def _is_list_of(values: Any, valid: Any) -> bool:
    return isinstance(values, list | tuple) and all(valid(value) for value in values)


def read_prompts(path: str | Path) -> list[Prompt]:
    """A JSON list of prompts: `[{"points": [[x, y]], "labels": [1], "box": [...], "slice": 40}, ...]`."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read prompts ({error}).") from error
    if not isinstance(content, list) or not content:
        raise ValueError(
            f'{path}: expected a non-empty JSON list of prompts, e.g. [{{"box": [10, 10, 60, 50]}}].'
        )
    known = {item.name for item in fields(Prompt)}
    prompts = []
    for index, entry in enumerate(content):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: prompt {index} is not a JSON object of {sorted(known)}.")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(
                f"{path}: prompt {index} has unknown keys {unknown}; use any of {sorted(known)}."
            )
        try:
            prompts.append(Prompt(**entry))
        except ValueError as error:
            raise ValueError(f"{path}: prompt {index}: {error}") from None
    return prompts


@dataclass
class MaskPrediction:
    """What the model says for one prompt: `low_res` `(M, 4h, 4w)` float32 logits in the model frame for each
    mask decoded (M = 3 with SAM's multimask output, else 1; what a next decode takes as its mask prompt),
    `scores` `(M,)` the IoU head's estimates clipped to [0, 1], and `best`, the index of the highest score
    (the mask a label map takes). Masks are brought to the image's size (`original_size` `(H, W)`) only when
    asked for, and once: a label map needs only the best of three."""

    low_res: np.ndarray
    scores: np.ndarray
    best: int
    image_size: int  # the model's square input side S
    original_size: tuple[int, int]
    _upsampled: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def logits_of(self, index: int) -> np.ndarray:
        """Mask `index`'s logits `(H, W)` float32 at the image's size (SamProcessor's post-processing)."""
        if index not in self._upsampled:
            reshaped = resized_shape(self.original_size, self.image_size)
            logits = logits_to_original_logits(
                torch.from_numpy(self.low_res[index]), self.image_size, reshaped, self.original_size
            )
            self._upsampled[index] = logits.numpy()
        return self._upsampled[index]

    def probabilities_of(self, index: int) -> np.ndarray:
        """Mask `index`'s probability `(H, W)` float32: the sigmoid of its logits."""
        return _sigmoid(self.logits_of(index))

    @property
    def logits(self) -> np.ndarray:
        """Every decoded mask's logits `(M, H, W)` float32 at the image's size."""
        return np.stack([self.logits_of(index) for index in range(len(self.scores))])

    @property
    def mask(self) -> np.ndarray:
        """The best mask `(H, W)` bool: its logits above 0 (probability above 0.5)."""
        return self.logits_of(self.best) > 0

    @property
    def score(self) -> float:
        return float(self.scores[self.best])

    @property
    def probabilities(self) -> np.ndarray:
        """Every decoded mask's probability `(M, H, W)` float32: the sigmoid of its logits."""
        return _sigmoid(self.logits)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


class SegmentationPredictor:
    """Encode an image once, then segment it for any number of prompts.

    Clicks on a `SamModel` or `SamAdapterModel` are decoded by `ClickDecoder` (the same numbers in ~0.4x the
    time of the stock decoder; `benchmarks/`); other models (peft-wrapped, stand-ins) by their forward.
    `compile_encoder` compiles `model.vision_encoder` in place with `torch.compile` (0.85x encoder time at
    256 px on CPU in `make bench`, after a compilation that the first image waits for).
    """

    def __init__(
        self,
        model: Any,
        window: str | tuple[float, float] | None = None,
        compile_encoder: bool = False,
        device: str | torch.device | Placement | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        # `device` / `dtype`: see `resolve_placement` (default: CUDA with a bf16 encoder when there is a GPU)
        self.placement = resolve_placement(device, dtype)
        self.model = model.to(self.placement.device).eval()
        if compile_encoder:  # in place; pays off over many images (the first one waits for the compilation)
            compile_image_encoder(model)
        self.window = window
        self.image_size = model.config.vision_config.image_size
        self._embedding: torch.Tensor | None = None
        self._original_size: tuple[int, int] | None = None
        self._click_decoder = click_decoder_for(model)
        self._text_encoder: Any = None

    @property
    def original_size(self) -> tuple[int, int]:
        """`(H, W)` of the image set last."""
        if self._original_size is None:
            raise RuntimeError("call set_image first.")
        return self._original_size

    def text_features(self, text: str) -> torch.Tensor:
        """`(1, D)` features of `text` from the text encoder the model was trained with (loaded on first use)."""
        if getattr(self.model.config, "text_embedding_dim", None) is None:
            raise ValueError("this model takes no text prompts (it was not trained with --text-prompts).")
        if self._text_encoder is None:
            from msa_hf.modeling.text_prompts import TextEncoder

            name = self.model.config.text_encoder_name
            if not name:
                raise ValueError(
                    "the model's config names no text encoder (text_encoder_name); set it to the CLIP used."
                )
            self._text_encoder = TextEncoder.from_pretrained(name)
        return self._text_encoder([text]).to(self.model.device)

    @torch.no_grad()
    def set_image(self, image: np.ndarray, modality: str = "other") -> None:
        """`image` `(H, W)` (any dtype; intensity chosen by `modality`) or `(H, W, 3|4)` RGB(A) (uint8, uint16
        or float in [0, 1]); other shapes and NaN or infinite values raise `ValueError` (`image_to_pixel_values`).

        A model with a depth branch sees the picture as a window of D copies of it (`encode_pictures`); for the
        slices of a volume, `msa_hf.inference.volume_predictor.VolumePredictor` encodes real neighbours instead."""
        array = np.asarray(image)
        pixel_values = image_to_pixel_values(array, self.image_size, modality, self.window)
        embedding = encode_pictures(self.model, pixel_values[None], placement=self.placement)
        self.set_image_embedding(embedding, array.shape[:2])

    def set_image_embedding(self, embedding: torch.Tensor, original_size: tuple[int, int]) -> None:
        """Use an embedding computed elsewhere: `embedding` `(1, C, h, w)` of an image of `original_size` (H, W)."""
        embedding = embedding.to(self.model.device)
        if self._click_decoder is not None and embedding is not self._embedding:  # the demo re-sets per click
            self._click_decoder.set_image_embedding(embedding)
        self._embedding = embedding
        self._original_size = (int(original_size[0]), int(original_size[1]))

    @torch.no_grad()
    def predict(self, prompt: Prompt, multimask: bool | None = None) -> tuple[np.ndarray, float]:
        """The mask `(H, W)` bool at the image's size, and the IoU head's score in [0, 1] (`predict_masks`'s
        best mask)."""
        prediction = self.predict_masks(prompt, multimask)
        return prediction.mask, prediction.score

    @torch.no_grad()  # inference: no graph, and the outputs become NumPy arrays
    def predict_masks(
        self, prompt: Prompt, multimask: bool | None = None, mask_prompt: np.ndarray | None = None
    ) -> MaskPrediction:
        """Every mask the decoder gives for `prompt`, as logits at the image's size, with their scores.

        `mask_prompt` `(4h, 4w)`: low-resolution logits in the model frame given as SAM's mask prompt (a
        previous `MaskPrediction.low_res` mask: the iterative round, or the neighbouring slice's mask).

        The score is the IoU head's estimate of the mask's IoU with the intended target. The head regresses it
        without a squashing function, so it can leave [0, 1] slightly (1.005); it is clipped to that range.

        `multimask=None` follows SAM: a single click is ambiguous, so it takes the best of three masks by the
        IoU head; several clicks, a box or a text give one mask."""
        if self._embedding is None or self._original_size is None:
            raise RuntimeError("call set_image first.")
        if multimask is None:
            multimask = len(prompt.points or []) == 1 and prompt.box is None and not prompt.text
        height, width = self._original_size
        kwargs: dict[str, torch.Tensor] = {}
        if prompt.points:
            points = np.asarray(prompt.points, dtype=np.float64)
            outside = (
                (points[:, 0] < 0) | (points[:, 0] >= width) | (points[:, 1] < 0) | (points[:, 1] >= height)
            )
            if outside.any():
                raise ValueError(
                    f"points {points[outside].tolist()} lie outside the {width}x{height} image (x < {width}, "
                    f"y < {height}); coordinates are (x, y) = (column, row)."
                )
            mapped = to_model_frame(points, self._original_size, self.image_size)
            kwargs["input_points"] = torch.tensor(mapped, dtype=torch.float32)[None, None].to(
                self.model.device
            )
            kwargs["input_labels"] = torch.tensor(prompt.labels)[None, None].to(self.model.device)
        if prompt.box is not None:
            box = np.asarray(prompt.box, dtype=np.float64).reshape(2, 2)
            if (
                (box < 0).any()
                or (box[:, 0] >= width).any()
                or (box[:, 1] >= height).any()
                or (box[1] < box[0]).any()
            ):
                raise ValueError(f"box {prompt.box} must be x0 <= x1 < {width}, y0 <= y1 < {height}.")
            mapped = to_model_frame(box, self._original_size, self.image_size).reshape(4)
            kwargs["input_boxes"] = torch.tensor(mapped, dtype=torch.float32)[None, None].to(
                self.model.device
            )
        if prompt.text:
            kwargs["text_embeddings"] = self.text_features(prompt.text)
        if mask_prompt is not None:
            kwargs["input_masks"] = torch.as_tensor(np.asarray(mask_prompt), dtype=torch.float32)[
                None, None
            ].to(self.model.device)
        if self._click_decoder is not None and not prompt.text:
            pred_masks, iou_scores = self._click_decoder(multimask_output=multimask, **kwargs)
        else:
            outputs = self.model(image_embeddings=self._embedding, multimask_output=multimask, **kwargs)
            pred_masks, iou_scores = outputs.pred_masks, outputs.iou_scores
        raw_scores = iou_scores[0, 0].float()
        return MaskPrediction(
            low_res=pred_masks[0, 0].float().cpu().numpy(),
            scores=raw_scores.clamp(0.0, 1.0).cpu().numpy(),
            best=int(raw_scores.argmax()),  # ranked before clipping: two scores over 1 stay ordered
            image_size=self.image_size,
            original_size=self._original_size,
        )


def predict_file(
    model: Any,
    input_path: str | Path,
    output_path: str | Path,
    prompts: list[Prompt],
    window: str | tuple[float, float] | None = None,
    compile_encoder: bool | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    probabilities_path: str | Path | None = None,
    multimask: bool = False,
    batch_size: int | None = None,
    series: str | None = None,
    slice_spacing: float | None = None,
    plane: str = "auto",
    trained_planes: tuple[str, ...] | None = None,
    dicom_output: str = "seg",
    structure_files: bool = False,
    channel: ChannelChoice | None = None,
    volume_report: str | Path | None = None,
) -> dict[str, Any]:
    """Segment `input_path` with `prompts`; mask `k` (of prompt `k`) gets label value `k + 1`, or the prompt's
    `value`. Where masks of different values overlap, a label map keeps the later prompt's value (the summary's
    `warnings` say so: `overlap_note`); a DICOM-SEG or RT structure set keeps each structure whole, and so does
    `structure_files`: `output_path` is then a folder of one binary mask per label value, named by the prompts'
    `name`s (`<name>.nii.gz`, `<name>.png` for a 2-D image; `label_<value>` without one; the summary's
    `structure_files` maps values to files; `msa_hf.data.structure_files`). With
    `compile_encoder`, the image encoder runs `torch.compile`d (None: where it pays, `compile_by_default`; one
    input rarely has the slices for it).

    A DICOM series with an output ending in `.dcm` -> a DICOM-SEG referencing the series' instances (segment
    labels from the prompts' `name`s; `msa_hf.inference.dicom_seg`), or with `dicom_output="rtstruct"` an RT
    Structure Set of its contours (ROI names from the `name`s; `msa_hf.inference.rtstruct`).
    2-D images and single DICOM images -> a PNG label map of the same size (8-bit; 16-bit for values beyond
    255). A volume file or a DICOM series folder -> a label map on the input's grid, in the format the output's
    suffix names (NIfTI, NRRD `.nrrd` or MetaImage `.mha`): a volume file's own affine and voxel order, or the
    DICOM series' RAS affine. NRRD is a 3D Slicer segmentation, a segment per label value named by the
    prompts' `name`s (`slicer_segmentations`); named `.seg.nrrd`, it keeps structures that overlap whole, in
    layers (the summary's `layers`). Returns a summary (output path, per-prompt pixel
    counts and scores, and with `multimask` every mask's score).

    `probabilities_path` also writes each mask's probability (the sigmoid of its logits) as float32: a
    multi-page TIFF for an image (page k: prompt k), a volume file on the input's grid for a volume (`(X, Y, Z)`
    for one map, `(X, Y, Z, K)` for several; 0 where nothing was predicted). With `multimask`, each prompt
    gives SAM's three masks: the label map takes the best by score, the probability file holds all three
    (prompt k's at maps 3k, 3k + 1, 3k + 2). Not with propagation, which carries one mask.

    `batch_size`: a volume's slices per encoder call (`VolumePredictor.encoding_batch`). `series`: the stack
    of a DICOM folder that holds several (a study's series; `msa_hf.data.dicom_stacks`), by its key, series
    number or UID; the summary's `series` says which stack was read.

    `slice_spacing`: a depth-branch model's training slice spacing in mm (`MsaProcessor.slice_spacing`). A
    volume whose slices lie farther apart or closer is resampled along its slice axis to that spacing before
    the model sees it, and the masks come back onto the input's slices (`msa_hf.inference.slice_spacing`); the
    summary's `resampled` says so. Prompts, masks and the summary's slices stay in the input's own slices.
    A volume's summary gives each mask's volume in mL too (`volume_ml`, from the input's voxel size), and
    its `warnings` what to know of the input (pixels far from square: `planes.pixel_note`, also logged).

    `plane`: the plane a volume is cut into (`msa_hf.data.planes`): "axial", "coronal", "sagittal", or "auto"
    (axial unless its pixels are far from square, then the plane the scan was acquired in; `choose_plane`).
    Prompts' slices and pixels are that plane's display slices; the summary's `plane` says which was used.
    `trained_planes` (`MsaProcessor.planes`): where the plane is not one of them, the summary's `warnings`
    say so (`planes.unseen_plane_note`).

    `channel`: the channel to read of a 4-D input (or an NRRD's vector components) (`msa_hf.data.channels`;
    the model's own is `MsaProcessor.channel_choice`), by name where the dataset's `dataset.json` names its
    channels; the summary's `channel` says which. A 4-D input without one is refused, with its channels
    listed.

    The summary's `volumes_ml` gives each structure's whole volume as written (`{label value: mL}`; where a label
    map keeps the later prompt's value, the voxels that kept its own). `volume_report` (with a DICOM-SEG output)
    also writes them as a DICOM Measurement Report (SR) referencing the segments
    (`volume_report.write_volume_report`).
    """
    from msa_hf.data.channels import choose_volume_channel
    from msa_hf.data.slicer_segmentations import is_slicer_segmentation_path
    from msa_hf.data.volumes import guess_modality, load_volume, voxel_ml
    from msa_hf.inference.volume_predictor import VolumePredictor
    from msa_hf.inference.volume_slicing import SlicedVolume

    input_path, output_path = Path(input_path), Path(output_path)
    kind = check_prediction_request(
        input_path,
        output_path,
        prompts,
        probabilities_path,
        multimask,
        series,
        dicom_output,
        structure_files,
        volume_report,
    )
    placement = resolve_placement(device, dtype)
    if kind != "volume":
        image, modality = read_picture(input_path, kind)
        compile_encoder = compile_by_default(compile_encoder, placement, lambda: 1)
        predictor = SegmentationPredictor(model, window, compile_encoder, device, dtype)
        predictor.set_image(image, modality)
        return segment_picture(
            predictor, input_path, output_path, prompts, probabilities_path, multimask, structure_files
        )
    summary = _summary(input_path, output_path, probabilities_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    maps: list[np.ndarray] = []  # probability maps in the order they are written
    values = _label_values(prompts)
    decode = True if multimask else None  # None: SAM's rule (three masks for a single click, best kept)
    if input_path.is_dir():  # a DICOM folder: which of its stacks is read
        from msa_hf.data.dicom_stacks import choose_stack

        summary["series"] = choose_stack(input_path, series).describe()
    chosen = choose_volume_channel(input_path, channel)
    if chosen is not None:
        summary["channel"] = f"{chosen[0]} ({chosen[1]})" if chosen[1] else str(chosen[0])
    elif channel is not None and channel.origin == "--channel":
        _warn(summary, f"--channel {channel.describe()} left aside: {input_path.name} has one channel.")
    volume = load_volume(input_path, series=series, channel=chosen[0] if chosen else None)
    modality = guess_modality(volume)
    sliced = SlicedVolume.cut(volume, plane, slice_spacing, trained_planes, input_path)
    summary["plane"] = sliced.plane
    for note in sliced.notes:  # said, not refused: the masks may still help
        _warn(summary, note)
    resampling, slices = sliced.resampling, sliced.slices
    if resampling is not None:
        summary["resampled"] = resampling.describe()
    # a DICOM object, a 3D Slicer segmentation (in layers) or a folder of structure files keeps structures that
    # overlap whole; a label map keeps one value per pixel
    keep_whole = is_dicom_output(output_path) or structure_files or is_slicer_segmentation_path(output_path)
    painted = PaintedLabels(slices.shape, _label_dtype(values), keep_whole)
    compile_encoder = compile_by_default(compile_encoder, placement, lambda: len(sliced.model_slices))
    # embeddings are cached per slice (per depth window with a depth branch): each slice is encoded once
    volume_predictor = VolumePredictor(model, window, compile_encoder, device, dtype, batch_size)
    volume_predictor.set_volume(sliced.model_slices, modality)
    for index, prompt in enumerate(prompts):
        if prompt.slice is None or not 0 <= prompt.slice < len(slices):
            raise ValueError(
                f"prompt {index}: a volume needs 'slice' in [0, {len(slices) - 1}], got {prompt.slice}."
            )
        model_slice = sliced.model_slice(prompt.slice)  # the input's own, or the nearest on the model's grid
        prediction = volume_predictor.predict_masks(model_slice, prompt, decode)
        mask = prediction.mask
        entry = _mask_entry(prediction, values[index], multimask, slice=prompt.slice)
        chosen = range(len(prediction.scores)) if multimask else [prediction.best]
        prompt_maps = [np.zeros(slices.shape, np.float32) for _ in chosen] if probabilities_path else []
        for volume_map, which in zip(prompt_maps, chosen, strict=False):  # none without a probability file
            volume_map[prompt.slice] = prediction.probabilities_of(which)
        if prompt.propagate and mask.any():
            propagation = volume_predictor.propagate(
                model_slice, mask, keep_probabilities=probabilities_path is not None or resampling is not None
            )
            masks, probabilities = propagation.masks, propagation.probabilities
            if resampling is not None:  # back onto the input's slices; the prompted one keeps its own mask
                seeds = {prompt.slice: (prediction.probabilities_of(prediction.best), mask)}
                masks, probabilities = resampling.propagation_to_input(probabilities, seeds)
            painted_over = painted.paint(masks, values[index])
            filled = np.flatnonzero(masks.any(axis=(1, 2)))
            entry.update(pixels=int(masks.sum()), slices=[int(filled.min()), int(filled.max())])
            if prompt_maps:  # the seed slice's map stays the prediction's
                seed = prompt_maps[0][prompt.slice].copy()
                prompt_maps[0][:] = probabilities
                prompt_maps[0][prompt.slice] = seed
        else:
            painted_over = painted.paint(mask, values[index], prompt.slice)
        if painted_over and not keep_whole:
            _warn(summary, overlap_note(index, values[index], painted_over, volume=True))
        entry["volume_ml"] = round(entry["pixels"] * voxel_ml(volume.affine), 4)  # what volumetry reads
        summary["masks"].append(entry)
        maps.extend(prompt_maps)
    names = _structure_names(values, prompts)
    # each structure's whole volume as written: its own mask where the output keeps it whole, else its voxels
    # in the label map
    structures = painted.structures() if keep_whole else painted.labels
    summary["volumes_ml"] = structure_volumes(structures, sorted(set(values)), voxel_ml(volume.affine))
    if structure_files:
        summary["structure_files"] = save_structure_files_on_input_grid(
            output_path,
            ((value, painted.structure_mask(value)) for value in sorted(set(values))),
            names,
            values,
            sliced,
            volume.affine,
            input_path,
        )
    elif keep_whole:  # each structure whole, overlaps kept
        from msa_hf.inference.dicom_outputs import dicom_structure_names, write_dicom_output

        canonical = (
            sliced.to_volume(structures)
            if isinstance(structures, np.ndarray)
            else {value: sliced.to_volume(mask) for value, mask in structures.items()}
        )
        if is_dicom_output(output_path):
            _note_renamed_structures(
                summary,
                names,
                dicom_structure_names(sorted(set(values)), names),
                "the DICOM output (a name shared by other label values, or over 64 bytes of UTF-8)",
            )
            written = write_dicom_output(
                dicom_output, input_path, canonical, volume.affine, output_path, names, series
            )
            _note_codes(summary, values, names, generic=dicom_output == "seg")
            if volume_report is not None:
                from msa_hf.inference.volume_report import write_volume_report

                write_volume_report(
                    output_path,
                    input_path,
                    {written[value]: ml for value, ml in summary["volumes_ml"].items() if value in written},
                    volume_report,
                    series=series,
                )
                summary["volume_report"] = str(volume_report)
        else:  # a 3D Slicer segmentation (.seg.nrrd): overlapping structures in layers
            _save_slicer_segmentation(
                summary, canonical, volume.affine, input_path, output_path, values, names
            )
    elif output_path.name.lower().endswith(".nrrd"):  # a 3D Slicer segmentation of one layer
        _save_slicer_segmentation(
            summary, sliced.to_volume(painted.labels), volume.affine, input_path, output_path, values, names
        )
    else:
        save_on_input_grid(sliced.to_volume(painted.labels), volume.affine, input_path, output_path)
    if probabilities_path is not None:
        channels = [sliced.to_volume(volume_map) for volume_map in maps]
        stacked = channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)
        save_on_input_grid(stacked, volume.affine, input_path, Path(probabilities_path))
    return summary


def structure_volumes(
    structures: np.ndarray | dict[int, np.ndarray], values: Iterable[int], millilitres_per_voxel: float
) -> dict[int, float]:
    """Each structure of `values`'s whole volume in mL (`{label value: mL}`; 0 for one with no voxel): its voxels
    in the label map `structures`, or in its own mask (`{value: mask}`, where structures overlap), times a
    voxel's true volume."""

    def voxels(value: int) -> int:
        if isinstance(structures, dict):
            return int(np.count_nonzero(structures[value])) if value in structures else 0
        return int(np.count_nonzero(structures == value))

    return {int(value): round(voxels(value) * millilitres_per_voxel, 4) for value in values}


def _note_codes(
    summary: dict[str, Any], values: list[int], names: dict[int, str], generic: bool = False
) -> None:
    """The summary's `codes`: what each written structure is coded as (`structure_codes.written_codes`; with
    `generic`, as a DICOM-SEG codes a name that denotes no standard concept), so such a name is seen."""
    from msa_hf.data.structure_codes import written_codes

    codes = written_codes(sorted(set(values)), names, generic)
    if codes:
        summary["codes"] = codes


def _save_slicer_segmentation(
    summary: dict[str, Any],
    canonical: np.ndarray | dict[int, np.ndarray],
    canonical_affine: np.ndarray,
    input_path: Path,
    output_path: Path,
    values: list[int],
    names: dict[int, str],
) -> None:
    """A volume's structures (a RAS+ label map `(X, Y, Z)`, or each one's mask where they overlap) as a 3D
    Slicer segmentation on the input's grid, every prompted structure a named segment (overlapping ones in
    layers: `slicer_segmentations.slicer_layers`); the summary says which names were told apart and how each
    structure is coded."""
    from msa_hf.data.label_tables import output_structure_names
    from msa_hf.data.slicer_segmentations import slicer_layers

    written = sorted(set(values))
    _note_renamed_structures(
        summary,
        names,
        output_structure_names(written, names),
        "the segmentation (a name shared by other label values)",
    )
    if isinstance(canonical, dict):
        canonical = slicer_layers(canonical)
        summary["layers"] = canonical.shape[3]  # structures that overlap, each whole in a layer
    save_on_input_grid(
        canonical, canonical_affine, input_path, output_path, {v: names.get(v, "") for v in written}
    )
    _note_codes(summary, values, names)


def read_picture(input_path: str | Path, kind: str) -> tuple[np.ndarray, str]:
    """A 2-D input (`kind` "image" or "dicom", from `check_prediction_request`) as its picture `(H, W)` or
    `(H, W, 3|4)` and the modality its intensities are read by: a single DICOM (an X-ray, an ultrasound frame,
    one CT/MR slice) by its own modality, other images as "other"."""
    from msa_hf.data.image_files import read_dicom_image, read_image

    if kind == "dicom":
        return read_dicom_image(input_path)
    return read_image(input_path), "other"


def segment_picture(
    predictor: SegmentationPredictor,
    input_path: str | Path,
    output_path: str | Path,
    prompts: list[Prompt],
    probabilities_path: str | Path | None = None,
    multimask: bool = False,
    structure_files: bool = False,
) -> dict[str, Any]:
    """`predict_file` for a 2-D input whose picture `predictor` already holds (`set_image`, or an embedding
    encoded with others: `set_image_embedding`): decode every prompt, write the label map or the folder of
    structure files (and the probabilities), return the summary."""
    from PIL import Image

    input_path, output_path = Path(input_path), Path(output_path)
    summary = _summary(input_path, output_path, probabilities_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    values = _label_values(prompts)
    painted = PaintedLabels(predictor.original_size, _label_dtype(values), keep_whole=structure_files)
    maps: list[np.ndarray] = []  # probability pages in the order they are written
    for index, prompt in enumerate(prompts):
        prediction = predictor.predict_masks(prompt, True if multimask else None)
        mask = prediction.mask
        painted_over = painted.paint(mask, values[index])
        if painted_over and not structure_files:
            _warn(summary, overlap_note(index, values[index], painted_over, volume=False))
        summary["masks"].append(_mask_entry(prediction, values[index], multimask))
        if probabilities_path is not None:
            chosen = range(len(prediction.scores)) if multimask else [prediction.best]
            maps.extend(prediction.probabilities_of(which) for which in chosen)
    if structure_files:  # the usual binary PNG: 0 and 255
        summary["structure_files"] = write_structure_folder(
            output_path,
            ((value, painted.structure_mask(value).astype(np.uint8) * 255) for value in sorted(set(values))),
            _structure_names(values, prompts),
            values,
            lambda _, mask, path: Image.fromarray(mask).save(path),
            PICTURE_SUFFIX,
            inputs=[input_path],
        )
    else:
        with atomic_file(output_path, inputs=[input_path]) as staging:
            Image.fromarray(painted.labels).save(staging)
    if probabilities_path is not None:
        with atomic_file(Path(probabilities_path), inputs=[input_path]) as staging:
            pages = [Image.fromarray(page, mode="F") for page in maps]
            pages[0].save(staging, format="TIFF", save_all=True, append_images=pages[1:])
    return summary


def paint_mask(
    labels: np.ndarray,
    mask: np.ndarray,
    value: int,
    painted_over: Callable[[int, np.ndarray], None] | None = None,
) -> dict[int, int]:
    """Write `value` into the label map `labels` where `mask` (same shape, bool), over whatever was there;
    `painted_over(other, pixels)` is told, before, which pixels of each other value go. Returns `{other value:
    pixels of it painted over}` (a value's own pixels do not count: two prompts of one structure, two lobes of
    one organ, may overlap)."""
    under = labels[mask]
    others, counts = np.unique(under[(under != 0) & (under != value)], return_counts=True)
    for other in others if painted_over is not None else ():
        painted_over(int(other), mask & (labels == other))
    labels[mask] = value
    return {int(other): int(count) for other, count in zip(others, counts, strict=True)}


class PaintedLabels:
    """A label map `labels` painted prompt by prompt, the later over the earlier (`paint`); with `keep_whole`,
    the pixels each value loses to a later one are remembered, so every structure can be given back whole
    (`structures`) while only the structures painted over take a mask of their own."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, keep_whole: bool = False) -> None:
        self.labels = np.zeros(shape, dtype)
        self._lost: dict[int, np.ndarray] | None = {} if keep_whole else None

    def paint(self, mask: np.ndarray, value: int, index: int | None = None) -> dict[int, int]:
        """`paint_mask` of `mask` (shaped like `labels`, or like its slice `index`); returns what it covered."""
        region = self.labels if index is None else self.labels[index]

        def remember(other: int, pixels: np.ndarray) -> None:
            lost = self._lost.setdefault(other, np.zeros(self.labels.shape, bool))
            (lost if index is None else lost[index])[pixels] = True

        return paint_mask(region, mask, value, remember if self._lost is not None else None)

    def structure_mask(self, value: int) -> np.ndarray:
        """Structure `value`'s whole mask (bool, shaped like `labels`): its pixels in the map and, with
        `keep_whole`, those it lost to later values."""
        mask = self.labels == value
        if self._lost and value in self._lost:
            mask |= self._lost[value]
        return mask

    def structures(self) -> np.ndarray | dict[int, np.ndarray]:
        """The label map where no structure was painted over, else each value's whole mask
        (`structure_mask`), as the DICOM writers take them (`dicom_planes.Structures`)."""
        if not self._lost:
            return self.labels
        values = {int(v) for v in np.unique(self.labels) if v} | set(self._lost)
        return {value: self.structure_mask(value) for value in sorted(values)}


def overlap_note(index: int, value: int, painted_over: dict[int, int], volume: bool) -> str:
    """What a summary says where prompt `index`'s mask (label `value`) covered other structures' pixels
    (`paint_mask`): a label map keeps one value per pixel, and what keeps both."""
    covered = ", ".join(f"{count} of label {other}" for other, count in sorted(painted_over.items()))
    keeps = (
        "one file per structure (--structure-files), a 3D Slicer segmentation (.seg.nrrd, in layers) and, for a "
        "DICOM series, a DICOM-SEG or an RT structure set (.dcm) keep each structure whole, as the probability "
        "file (--save-probabilities) does"
        if volume
        else "one file per structure (--structure-files) keeps each mask whole, as the probability file "
        "(--save-probabilities) does"
    )
    return (
        f"prompt {index}'s mask (label {value}) covers pixels of earlier masks ({covered}); the label map keeps "
        f"one value per pixel, the later prompt's there; {keeps}."
    )


def _warn(summary: dict[str, Any], note: str) -> None:
    """Log `note` and add it to the summary's `warnings`: said, not refused (the masks may still help)."""
    logger.warning(note)
    summary.setdefault("warnings", []).append(note)


def _note_renamed_structures(
    summary: dict[str, Any], names: dict[int, str], labels: dict[int, str], where: str
) -> None:
    """Say which structures an output that names them (`where`, and why) labels otherwise than named
    (`labels`, from `label_tables.output_structure_names`: names shared by structures of different values,
    or too long for DICOM)."""
    renamed = {
        value: labels[value] for value in labels if names.get(value) and labels[value] != names[value].strip()
    }
    if renamed:
        _warn(
            summary,
            f"structures labelled otherwise in {where}: "
            + ", ".join(f"{names[v]!r} (value {v}) as {n!r}" for v, n in renamed.items())
            + ". Give prompts of one structure the same value to write them as one.",
        )


def _structure_names(values: list[int], prompts: list[Prompt]) -> dict[int, str]:
    """`{label value: name}`: the first `name` among the prompts of each value (a structure prompted on
    several slices is named once)."""
    names: dict[int, str] = {}
    for value, prompt in zip(values, prompts, strict=True):
        if prompt.name:
            names.setdefault(value, prompt.name)
    return names


def _label_values(prompts: list[Prompt]) -> list[int]:
    """The label value of each prompt's mask: its `value`; else, for a prompt named as an earlier one is (case
    aside), that one's value, so one structure prompted on several slices is one structure; else its position
    + 1."""
    values: list[int] = []
    by_name: dict[str, int] = {}
    for index, prompt in enumerate(prompts):
        name = (prompt.name or "").strip().casefold()
        value = prompt.value or (by_name.get(name) if name else None) or index + 1
        if name:
            by_name.setdefault(name, value)
        values.append(value)
    return values


def _label_dtype(values: list[int]) -> type[np.unsignedinteger]:
    """8-bit label maps unless a value needs 16 bits."""
    return np.uint16 if max(values) > 255 else np.uint8


def _summary(input_path: Path, output_path: Path, probabilities_path: str | Path | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"input": str(input_path), "output": str(output_path), "masks": []}
    if probabilities_path is not None:
        summary["probabilities"] = str(probabilities_path)
    return summary


def _mask_entry(prediction: MaskPrediction, label: int, multimask: bool, **extra: Any) -> dict[str, Any]:
    """One prompt's line of a summary: its label value, pixels and score (every mask's with `multimask`)."""
    entry = {"label": label, **extra, "pixels": int(prediction.mask.sum()), "score": prediction.score}
    if multimask:
        entry["scores"] = [float(v) for v in prediction.scores]
    return entry


def is_dicom_output(output_path: str | Path) -> bool:
    """Whether a volume's mask is to be written as a DICOM object (a `.dcm` path: a DICOM-SEG, or an RT
    structure set, as `dicom_output` says) rather than NIfTI."""
    return str(output_path).lower().endswith(".dcm")


# lossless formats for a 2-D label map (JPEG would smear the label values)
MASK_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


def input_kind(input_path: str | Path) -> str:
    """What an input is: "volume" (a NIfTI, NRRD or MetaImage file, a DICOM series folder, an enhanced
    multi-frame DICOM file), "dicom" (a single DICOM image) or "image" (PNG/JPEG/TIFF/BMP). Raises `ValueError`
    for anything else."""
    from msa_hf.data.image_files import is_dicom_file, is_image_file
    from msa_hf.data.volumes import VOLUME_FILE_NAMES, is_dicom_stack_source, is_volume_file

    input_path = Path(input_path)
    if is_volume_file(input_path) or is_dicom_stack_source(input_path):
        return "volume"
    if input_path.is_file() and is_dicom_file(input_path):
        return "dicom"
    if is_image_file(input_path):
        return "image"
    raise ValueError(
        f"{input_path}: not an image (PNG/JPEG/TIFF/BMP or a single DICOM file), a volume ({VOLUME_FILE_NAMES}) or "
        "a DICOM series folder."
    )


def _check_volume_report(report: Path, input_path: Path, output_path: Path, dicom_output: str | None) -> None:
    """Refuses a volume report that cannot be written: one without a DICOM-SEG output to reference, one not
    named `.dcm`, or one that is the input or the mask."""
    if not is_dicom_output(output_path) or dicom_output not in (None, "seg"):
        raise ValueError(
            f"--volume-report {report}: a volume report references the segments of a DICOM-SEG; write the mask "
            "as one (OUTPUT.dcm of a DICOM series, without --dicom-output rtstruct), or leave it out."
        )
    if report.suffix.lower() != ".dcm":
        raise ValueError(f"--volume-report {report}: a DICOM Structured Report is written to a .dcm file.")
    if report.resolve() == output_path.resolve():
        raise ValueError(
            f"--volume-report {report}: it is the mask's own path; give the report another name."
        )
    check_not_an_input(report, [input_path])


def check_prediction_request(
    input_path: str | Path,
    output_path: str | Path,
    prompts: list[Prompt],
    probabilities_path: str | Path | None = None,
    multimask: bool = False,
    series: str | None = None,
    dicom_output: str | None = None,
    structure_files: bool = False,
    volume_report: str | Path | None = None,
) -> str:
    """What `input_path` is: "dicom" (a single DICOM image), "image" (PNG/JPEG/TIFF/BMP) or "volume" (NIfTI
    or a DICOM series folder). `dicom_output` (`dicom_outputs.DICOM_OUTPUTS`; None: seg) is the DICOM object a
    `.dcm` output is written as, refused for any other output; with `structure_files` the output is a folder
    of one mask per structure (`predict_file`); `volume_report`, a DICOM SR beside a DICOM-SEG output.
    Raises `ValueError`, before anything is loaded
    or computed, for any other input, for an output format that cannot hold its mask or probabilities, for a probability file that is the input
    or the mask, for volume-only prompt settings on a 2-D image, for `multimask` with propagation, and for a
    DICOM folder whose stack to read is not known (several, and `series` names none of them: read from the
    headers, `msa_hf.data.dicom_stacks`)."""
    import functools

    from msa_hf.data.dicom_stacks import choose_stack
    from msa_hf.data.slicer_segmentations import is_slicer_segmentation_path
    from msa_hf.data.volumes import (
        ONE_FILE_VOLUME_SUFFIXES,
        import_highdicom,
        is_dicom_stack_source,
        is_volume_file,
        volume_file_stem,
    )

    input_path, output_path = Path(input_path), Path(output_path)
    check_not_an_input(output_path, [input_path])  # `predict x.png x.png` must not replace the picture
    kind = input_kind(input_path)
    # the stack a DICOM folder or enhanced file is read as, from its headers: read once, when first needed
    stack = functools.cache(lambda: choose_stack(input_path, series))
    name = output_path.name.lower()
    if dicom_output not in (None, "seg") and not is_dicom_output(output_path):
        from msa_hf.inference.dicom_outputs import DICOM_OUTPUT_NAMES, check_dicom_output

        raise ValueError(
            f"output {output_path}: {DICOM_OUTPUT_NAMES[check_dicom_output(dicom_output)]} is written to a "
            ".dcm file (of a DICOM series' mask); name the output so, or leave out --dicom-output."
        )
    if structure_files:
        if is_dicom_output(output_path) or dicom_output not in (None, "seg"):
            raise ValueError(
                f"output {output_path}: a DICOM-SEG or RT structure set keeps each structure whole already; "
                "leave out --structure-files (one file per structure is for volume files and PNG masks)."
            )
        if name.endswith((*MASK_IMAGE_SUFFIXES, *ONE_FILE_VOLUME_SUFFIXES)) or output_path.is_file():
            raise ValueError(
                f"output {output_path}: structure files are written into a folder, one mask per structure; give a "
                f"folder path (such as {output_path.parent / volume_file_stem(output_path)})."
            )
    elif kind != "volume":
        if not name.endswith(MASK_IMAGE_SUFFIXES):
            raise ValueError(
                f"output {output_path}: the mask of a 2-D image is written as {', '.join(MASK_IMAGE_SUFFIXES)} "
                f"(lossless); {', '.join(ONE_FILE_VOLUME_SUFFIXES)} are for volumes."
            )
    elif is_dicom_output(output_path):
        from msa_hf.inference.dicom_outputs import DICOM_OUTPUT_NAMES, check_dicom_output

        written_as = DICOM_OUTPUT_NAMES[check_dicom_output(dicom_output or "seg")]
        if not is_dicom_stack_source(input_path):
            raise ValueError(
                f"output {output_path}: {written_as} (.dcm) references the images of a DICOM series; "
                f"{input_path} is not one. Write {', '.join(ONE_FILE_VOLUME_SUFFIXES)}."
            )
        if dicom_output != "rtstruct":
            from msa_hf.inference.dicom_seg import _highdicom

            _highdicom()  # the extra is there before anything runs
    elif not name.endswith(ONE_FILE_VOLUME_SUFFIXES):
        raise ValueError(
            f"output {output_path}: the mask of a volume is written as NIfTI (.nii, .nii.gz), NRRD (.nrrd, a 3D "
            "Slicer segmentation; .seg.nrrd as Slicer names one) or MetaImage (.mha) (or .dcm, DICOM-SEG, for a "
            "DICOM series)."
        )
    if volume_report is not None:
        _check_volume_report(Path(volume_report), input_path, output_path, dicom_output)
    for index, prompt in enumerate(prompts if kind != "volume" else ()):
        if prompt.slice is not None or prompt.propagate:
            raise ValueError(
                f"prompt {index}: 'slice' and 'propagate' are for volumes; {input_path} is a 2-D image."
            )
    if multimask and any(prompt.propagate for prompt in prompts):
        raise ValueError(
            "multimask gives three masks per prompt; propagation carries one: use one or the other."
        )
    enhanced = kind == "volume" and not is_volume_file(input_path) and not input_path.is_dir()
    if input_path.is_dir() or enhanced:  # a folder, or an enhanced file, may hold several stacks: chosen here
        enhanced = stack().multi_frame
    elif series is not None:
        raise ValueError(
            f"{input_path}: a series is chosen in a DICOM folder or an enhanced multi-frame file; this input is "
            "neither."
        )
    if enhanced:  # its reader is there before anything runs
        import_highdicom("reading an enhanced multi-frame DICOM volume")
    if probabilities_path is not None:
        probabilities_path = Path(probabilities_path)
        check_not_an_input(probabilities_path, [input_path])
        if probabilities_path.resolve() == output_path.resolve():
            raise ValueError(
                f"probabilities {probabilities_path}: the same file as the mask; give the probabilities a path "
                "of their own."
            )
        wanted = (".tif", ".tiff") if kind != "volume" else ONE_FILE_VOLUME_SUFFIXES
        if is_slicer_segmentation_path(probabilities_path):
            raise ValueError(
                f"probabilities {probabilities_path}: float maps are not a 3D Slicer segmentation (.seg.nrrd), "
                "which holds label values; name them .nrrd."
            )
        if not probabilities_path.name.lower().endswith(wanted):
            raise ValueError(
                f"probabilities {probabilities_path}: float maps of a {'volume' if kind == 'volume' else '2-D image'} "
                f"are written as {' or '.join(wanted)}."
            )
    return kind


def save_on_input_grid(
    canonical: np.ndarray,
    canonical_affine: np.ndarray,
    input_path: Path,
    output: Path,
    names: Mapping[int, str] | None = None,
) -> None:
    """Write a RAS+ volume `(X, Y, Z)` back in a volume file input's own voxel order and affine (DICOM:
    RAS+), in the format `output`'s suffix names (`volumes.save_volume`: a label map with its structures'
    `names`, `{label value: name}`, as a 3D Slicer segmentation in NRRD), whole or not at all
    (`output_files.atomic_file`), never over the input."""
    with atomic_file(output, inputs=[input_path]) as staging:
        _write_on_input_grid(canonical, canonical_affine, Path(input_path), staging, names)


def save_structure_files_on_input_grid(
    output: str | Path,
    masks: Iterable[tuple[int, np.ndarray]],
    names: dict[int, str],
    values: Iterable[int],
    sliced: Any,
    canonical_affine: np.ndarray,
    input_path: str | Path,
) -> dict[int, str]:
    """Each `(value, mask)` of `masks` (bool, on the display slices of `sliced`, a `SlicedVolume`; taken one at a
    time) as a binary volume file on the input's grid, in the input's format (`volume_output_suffix`), as
    `save_on_input_grid` writes a label volume, in the folder `output`
    (`structure_files.write_structure_folder`: named by `names`, over all `values`; an NRRD file as a 3D
    Slicer segmentation of one segment, named so), never over the input. Returns `{value: file name}`."""
    from msa_hf.data.label_tables import output_structure_names

    input_path = Path(input_path)
    values = list(values)
    segments = output_structure_names(sorted(set(values)), names)
    return write_structure_folder(
        output,
        ((value, sliced.to_volume(mask.astype(np.uint8))) for value, mask in masks),
        names,
        values,
        lambda value, mask, path: _write_on_input_grid(
            mask, canonical_affine, input_path, path, {1: segments[value]}
        ),
        volume_output_suffix(input_path),
        inputs=[input_path],
    )


def _write_on_input_grid(
    canonical: np.ndarray,
    canonical_affine: np.ndarray,
    input_path: Path,
    output: Path,
    names: Mapping[int, str] | None = None,
) -> None:
    import nibabel as nib
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

    from msa_hf.data.volumes import is_nifti, is_volume_file, save_volume, volume_file_header

    if is_nifti(input_path) and is_nifti(output):
        original = nib.load(str(input_path))
        transform = ornt_transform(io_orientation(canonical_affine), io_orientation(original.affine))
        array = apply_orientation(canonical, transform)
        image = nib.Nifti1Image(np.ascontiguousarray(array), original.affine)
        # the input's own geometry, so that a viewer lays the mask where it shows the input: both of its
        # affines with their codes (a qform to the scanner beside an sform to a template stays so; one the
        # input lacks is its affine, as scanner space) and its units (millimetres where it says none)
        for kind in ("qform", "sform"):
            affine, code = getattr(original.header, f"get_{kind}")(coded=True)
            getattr(image, f"set_{kind}")(affine if code else original.affine, code=int(code) or 1)
        space, time = original.header.get_xyzt_units()
        image.header.set_xyzt_units("mm" if space == "unknown" else space, time)
        nib.save(image, str(output))
        return
    if is_volume_file(input_path):  # in the input's voxel order, on its affine
        input_affine = volume_file_header(input_path)[0]
        canonical = apply_orientation(
            canonical, ornt_transform(io_orientation(canonical_affine), io_orientation(input_affine))
        )
        canonical_affine = input_affine
    save_volume(np.ascontiguousarray(canonical), canonical_affine, output, names)  # a DICOM series: RAS+
