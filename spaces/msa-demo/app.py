# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Gradio demo: click or box a structure on a medical image or volume and see MSA's mask.

`build_demo(model)` builds the app around any SAM-shaped model (tests inject tiny ones; the Space loads the
model named by `MSA_MODEL`, or a base with several task adapters named by `MSA_ADAPTERS`). The image is
encoded once per upload (per depth window for volumes) and decoded per click, as SAM's predictor does.
`segment` is also an API endpoint (`api_name="segment"`) for `gradio_client`.

Prompts: positive/negative clicks, and a box drawn by clicking two opposite corners. Volumes (NIfTI or a
DICOM series): prompt any slice, then propagate its mask through the volume.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

from msa_hf.evaluation.pictures import draw_prompts, overlay
from msa_hf.hub.task_adapters import task_adapter_names
from msa_hf.inference.image_encoding import encode_slices, image_to_pixel_values
from msa_hf.inference.predictor import Prompt, SegmentationPredictor

MAX_SIDE = 4096  # larger uploads are refused with a message, not processed for minutes
MAX_VOXELS = 512 * 512 * 1024
MAX_UPLOAD = "500mb"
POSITIVE, NEGATIVE, BOX = "positive click", "negative click", "box (click two corners)"
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"]


# ----------------------------------------------------------------------------------------- prompts
def empty_prompts() -> dict[str, Any]:
    """A fresh prompt state: clicks `[[x, y, label], ...]`, a box, a half-drawn box's first corner, and the
    order in which clicks and the box were added (for undo)."""
    return {"points": [], "box": None, "corner": None, "history": []}


def add_prompt(
    prompts: dict[str, Any], x: float, y: float, mode: str, shape: tuple[int, ...]
) -> dict[str, Any]:
    """`prompts` with a click at `(x, y)` added in `mode` (a new dict; the state is never mutated).

    In box mode the first click sets a corner and the second completes the box (replacing an earlier box).
    Raises:
        ValueError: a click outside the image of `shape` `(H, W, ...)`, or an unknown mode.
    """
    height, width = shape[:2]
    x, y = (v.item() if isinstance(v, np.generic) else v for v in (x, y))  # the state stays JSON-like
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"the click ({x}, {y}) is outside the {width}x{height} image.")
    prompts = copy.deepcopy(prompts)
    if mode == BOX:
        if prompts["corner"] is None:
            prompts["corner"] = [x, y]
            return prompts
        (x0, y0), (x1, y1) = prompts["corner"], (x, y)
        prompts["box"] = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        prompts["corner"] = None
        prompts["history"] = [kind for kind in prompts["history"] if kind != "box"] + ["box"]
    elif mode in (POSITIVE, NEGATIVE):
        prompts["points"].append([x, y, 1 if mode == POSITIVE else 0])
        prompts["history"].append("point")
    else:
        raise ValueError(f"unknown prompt mode {mode!r}; choose one of {[POSITIVE, NEGATIVE, BOX]}.")
    return prompts


def undo_prompt(prompts: dict[str, Any]) -> dict[str, Any]:
    """`prompts` without its last addition (a pending corner first)."""
    prompts = copy.deepcopy(prompts)
    if prompts["corner"] is not None:
        prompts["corner"] = None
    elif prompts["history"]:
        if prompts["history"].pop() == "box":
            prompts["box"] = None
        else:
            prompts["points"].pop()
    return prompts


def describe(prompts: dict[str, Any]) -> str:
    """A one-line summary for the status box, e.g. "2 click(s), box"."""
    parts = [f"{len(prompts['points'])} click(s)"] if prompts["points"] else []
    parts += ["box"] if prompts["box"] else []
    text = ", ".join(parts) or "no prompts"
    return text + ("; box: click the opposite corner" if prompts["corner"] is not None else "")


def has_prompt(prompts: dict[str, Any]) -> bool:
    return bool(prompts["points"]) or prompts["box"] is not None


def to_prompt(points: list[list[float]], box: list[float] | None, text: str | None = None) -> Prompt:
    """The demo's clicks `[[x, y, label], ...]`, box and text as the predictor's `Prompt`."""
    return Prompt(
        points=[[p[0], p[1]] for p in points] or None,
        labels=[int(p[2]) for p in points] or None,
        box=list(box) if box else None,
        text=text,
    )


# ----------------------------------------------------------------------------------------- files
def display_image(raw: np.ndarray, modality: str, window: Any = None) -> np.ndarray:
    """What the user sees of a raw image: `(H, W)` uint8 after the intensity transform the model was trained
    with (CT `window`, default by modality; MR percentiles), or the `(H, W, 3)` uint8 picture itself."""
    from msa_hf.data.transforms import intensity_transform_for

    if raw.ndim == 3:
        return raw
    scaled = intensity_transform_for(modality, raw.dtype, window)(raw.astype(np.float32))
    return (np.clip(np.asarray(scaled), 0, 1) * 255).astype(np.uint8)


def read_upload(path: str, window: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    """An uploaded 2-D file -> `(display image, raw image, modality)`; DICOM keeps its units (HU for CT), and
    is shown through the served model's CT `window`.

    Raises:
        ValueError: an unsupported type, an unreadable file, or an image larger than `MAX_SIDE`.
    """
    from msa_hf.data import is_dicom_file, read_dicom_image, read_image

    name = Path(path).name
    if Path(path).suffix.lower() in (".nii", ".gz"):
        raise ValueError(f"{name} is a volume: open it in the 'volume' tab.")
    if is_dicom_file(path):
        raw, modality = read_dicom_image(path)
    elif Path(path).suffix.lower() in IMAGE_TYPES:
        raw, modality = read_image(path), "other"
    else:
        raise ValueError(f"{name}: not a supported image; upload PNG, JPEG, TIFF, BMP or DICOM (.dcm).")
    if max(raw.shape[:2]) > MAX_SIDE:
        raise ValueError(
            f"{name}: {raw.shape[1]}x{raw.shape[0]} pixels; the demo takes up to {MAX_SIDE} a side."
        )
    return display_image(raw, modality, window), raw, modality


def source_of(image: np.ndarray, raw: dict[str, Any] | None) -> tuple[np.ndarray, str]:
    """What to segment for the picture on screen: the opened file's raw data (DICOM in HU, 16-bit PNG) when
    `raw` belongs to that picture, else the picture itself (an upload or an example replaced it)."""
    image = np.asarray(image)
    if raw is not None:
        shown = np.asarray(raw["shown"])
        first = image[..., 0] if image.ndim == 3 else image
        if first.shape == shown.shape[:2] and np.array_equal(
            first, shown if shown.ndim == 2 else shown[..., 0]
        ):
            return np.asarray(raw["image"]), raw["modality"]
    return image, "other"


# ----------------------------------------------------------------------------------------- sessions
class DemoSession:
    """The model shared by all visitors.

    Embeddings are kept for the last `cache_size` pictures (per modality and adapter), so each click costs
    one decoder pass and visitors do not evict each other's image at every click; `prepare` encodes a picture
    as soon as it is uploaded, so the first click is as fast as the next. Access is serialised, so one
    visitor's adapter choice never leaks into another's result.
    """

    def __init__(self, model: Any, cache_size: int = 8, window: Any = None) -> None:
        self.model = model
        self.window = window  # the CT window the model was trained with (its MsaProcessor's)
        self.predictor = SegmentationPredictor(model, window)
        self.adapters = task_adapter_names(model)
        self.cache_size = cache_size
        self._lock = threading.RLock()
        self._embeddings: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    @contextmanager
    def using(self, adapter: str | None) -> Iterator[None]:
        """Hold the model, with task adapter `adapter` active (ignored for a model without several)."""
        with self._lock:
            if adapter and self.adapters:
                if adapter not in self.adapters:
                    raise ValueError(f"unknown task adapter {adapter!r}; this demo has {self.adapters}.")
                if self.model.active_adapter != adapter:
                    self.model.set_adapter(adapter)
            yield

    def _embedding(self, image: np.ndarray, modality: str, adapter: str | None) -> torch.Tensor:
        """`(1, C, h, w)` for `image`, from the cache or encoded now (call under `using(adapter)`)."""
        key = (image.shape, str(image.dtype), hash(image.tobytes()), modality, adapter)
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
        else:
            pixel_values = image_to_pixel_values(image, self.predictor.image_size, modality, self.window)
            self._embeddings[key] = encode_slices(
                self.model, pixel_values[None], placement=self.predictor.placement
            )
            while len(self._embeddings) > self.cache_size:
                self._embeddings.popitem(last=False)
        return self._embeddings[key]

    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim not in (2, 3) or max(image.shape[:2]) > MAX_SIDE:
            raise ValueError(
                f"image of shape {image.shape}: expected a 2-D picture up to {MAX_SIDE} pixels a side."
            )
        return image

    def prepare(self, image: np.ndarray, modality: str = "other", adapter: str | None = None) -> None:
        """Encode `image` now (on upload), so that the first click only decodes."""
        image = self._check_image(image)
        with self.using(adapter):
            self._embedding(image, modality, adapter)

    def segment(
        self,
        image: np.ndarray,
        points: list[list[float]],
        box: list[float] | None,
        modality: str = "other",
        adapter: str | None = None,
        text: str | None = None,
    ) -> np.ndarray:
        """`image` `(H, W)` or `(H, W, 3)`; `points` `[[x, y, label], ...]` (label 1 or 0); `box` `[x0, y0, x1, y1]`;
        `text` describes the target (models trained with text prompts).

        Returns the mask `(H, W)` uint8 (0/255); callers draw it on the picture they show.
        Raises:
            ValueError: no prompt, a click or box outside the image, an image too large, an unknown adapter.
        """
        image = self._check_image(image)
        text = (text or "").strip() or None
        if not points and not box and not text:
            raise ValueError("add a click on the structure (or draw a box) first.")
        prompt = to_prompt(points, box, text)
        with self.using(adapter):
            self.predictor.set_image_embedding(self._embedding(image, modality, adapter), image.shape[:2])
            mask, _ = self.predictor.predict(prompt)
        return mask.astype(np.uint8) * 255


class VolumeSession:
    """A NIfTI volume or DICOM series in the demo: axial slices, prompts per slice, one mask volume,
    propagation through the volume, and a NIfTI download on the input's grid."""

    def __init__(self, files: str | list[str], session: DemoSession, adapter: str | None = None) -> None:
        from msa_hf.data import axial_slices, guess_modality, load_volume
        from msa_hf.inference.volume_predictor import VolumePredictor

        files = [files] if isinstance(files, str) else list(files)
        self.source = self._gather(files)
        self.volume = load_volume(self.source)
        if self.volume.array.size > MAX_VOXELS:
            raise ValueError(
                f"the volume has {self.volume.array.shape} voxels; the demo takes up to {MAX_VOXELS}."
            )
        self.modality = guess_modality(self.volume)
        self.slices = axial_slices(self.volume.array)
        self.masks = np.zeros(self.slices.shape, bool)
        self.prompts: dict[int, dict[str, Any]] = {}
        self.displayed: int | None = None
        self.session, self.adapter = session, adapter
        self.folder = tempfile.mkdtemp(prefix="msa-mask-")
        placement = session.predictor.placement  # the session's device and dtype
        self.predictor = VolumePredictor(
            session.model, session.window, device=placement.device, dtype=placement.dtype
        )
        self.predictor.set_volume(self.slices, self.modality)

    @staticmethod
    def _gather(files: list[str]) -> str:
        """One NIfTI file as is; DICOM files (a series) copied into one folder, as `load_dicom_series` reads."""
        from msa_hf.data import is_dicom_file
        from msa_hf.data.volumes import is_nifti

        if len(files) == 1 and is_nifti(files[0]):
            return files[0]
        if files and all(is_dicom_file(f) for f in files):
            folder = Path(tempfile.mkdtemp(prefix="msa-series-"))
            for index, file in enumerate(files):
                shutil.copy(file, folder / f"{index:05d}.dcm")
            return str(folder)
        names = [Path(f).name for f in files]
        raise ValueError(
            f"{names}: upload one NIfTI file (.nii, .nii.gz) or all the DICOM files (.dcm) of one series."
        )

    def prepare(self, index: int) -> None:
        """Encode slice `index`'s window now, so that its first click only decodes."""
        with self.session.using(self.adapter):
            self.predictor.embedding(index)

    def prompts_of(self, index: int) -> dict[str, Any]:
        return self.prompts.get(index, empty_prompts())

    def show(self, index: int) -> np.ndarray:
        """Slice `index` with its mask and prompts drawn, `(H, W, 3)` uint8 (remembered as the one on screen)."""
        self.displayed = index
        prompts = self.prompts_of(index)
        picture = overlay(self.slices[index], self.masks[index], margin=None, scale=1)
        return np.asarray(draw_prompts(picture, prompts["points"], prompts["box"], prompts["corner"]))

    def set_prompts(self, index: int, prompts: dict[str, Any], adapter: str | None = None) -> np.ndarray:
        """Store slice `index`'s prompts, segment it when they are complete; returns the new view."""
        self.prompts[index] = prompts
        if has_prompt(prompts):
            if adapter and adapter != self.adapter:  # the encoder adapters change: re-encode
                self.adapter = adapter
                self.predictor.set_volume(self.slices, self.modality)
            with self.session.using(self.adapter):
                mask, _ = self.predictor.predict(index, to_prompt(prompts["points"], prompts["box"]))
            self.masks[index] = mask
        else:
            self.masks[index] = False
        return self.show(index)

    def propagate(self, index: int) -> str:
        """Carry slice `index`'s mask through the volume; returns a summary line."""
        if not self.masks[index].any():
            raise ValueError("segment the structure on this slice first (click or box), then propagate.")
        with self.session.using(self.adapter):
            result = self.predictor.propagate(index, self.masks[index])
        self.masks[result.first : result.last + 1] = result.masks[result.first : result.last + 1]
        return (
            f"propagated from slice {index} to slices {result.first}-{result.last} "
            f"({int(result.masks.sum())} voxels)"
        )

    def save(self, folder: str | None = None) -> str:
        """The mask volume as NIfTI on the input's grid (its affine and voxel order), in `folder` (default:
        this session's own temporary folder, overwritten at each change)."""
        folder = folder or self.folder
        from msa_hf.data import volume_from_axial_slices
        from msa_hf.inference.predictor import _save_on_input_grid

        output = str(Path(folder) / "msa_mask.nii.gz")
        _save_on_input_grid(
            volume_from_axial_slices(self.masks.astype(np.uint8)),
            self.volume.affine,
            Path(self.source),
            Path(output),
        )
        return output


# ----------------------------------------------------------------------------------------- app
def build_demo(model: Any, window: Any = None) -> gr.Blocks:
    """The Gradio app around `model` (a `SamAdapterModel`, any model with SAM's interface, or a peft model
    holding several task adapters: `msa_hf.hub.task_adapters.load_task_adapters`)."""
    session = DemoSession(model, window=window)

    def guarded(function):
        """Show bad input as a message in the page, never as a stack trace."""

        @functools.wraps(function)  # Gradio reads the signature (gr.SelectData) through __wrapped__
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except (ValueError, RuntimeError, OSError) as error:
                raise gr.Error(str(error)) from None

        return run

    # --- 2-D
    def render(image, raw, prompts, adapter):
        source, modality = source_of(image, raw)
        if not has_prompt(prompts):
            picture = overlay(image, np.zeros(np.asarray(image).shape[:2], bool), margin=None, scale=1)
            mask = None
        else:
            mask = session.segment(source, prompts["points"], prompts["box"], modality, adapter)
            picture = overlay(image, mask > 0, margin=None, scale=1)
        marked = draw_prompts(picture, prompts["points"], prompts["box"], prompts["corner"])
        return np.asarray(marked), mask, describe(prompts)

    @guarded
    def on_click(image, raw, prompts, mode, adapter, evt: gr.SelectData):
        if image is None:
            raise ValueError("upload an image first.")
        x, y = evt.index
        prompts = add_prompt(prompts, x, y, mode, np.asarray(image).shape)
        return prompts, *render(image, raw, prompts, adapter)

    @guarded
    def on_undo(image, raw, prompts, adapter):
        prompts = undo_prompt(prompts)
        if image is None:
            return prompts, None, None, describe(prompts)
        return prompts, *render(image, raw, prompts, adapter)

    @guarded
    def on_text(image, raw, text, adapter):
        if image is None:
            raise ValueError("upload an image first.")
        if not (text or "").strip():
            raise ValueError("type a description of the target first.")
        source, modality = source_of(image, raw)
        mask = session.segment(source, [], None, modality, adapter, text=text)
        picture = overlay(image, mask > 0, margin=None, scale=1)
        return np.asarray(picture), mask, f"text: {text.strip()}"

    @guarded
    def prepare_picture(image, raw, adapter):
        if image is not None:
            session.prepare(*source_of(image, raw), adapter)

    @guarded
    def on_adapter(image, raw, prompts, adapter):
        if image is None or not has_prompt(prompts):
            prepare_picture(image, raw, adapter)
            return prompts, gr.update(), gr.update(), describe(prompts)
        return prompts, *render(image, raw, prompts, adapter)

    @guarded
    def on_file(file, adapter):
        if file is None:
            return gr.update(), None, empty_prompts(), None, None, "no prompts"
        path = file if isinstance(file, str) else file.name
        shown, raw, modality = read_upload(path, session.window)
        kept = {"image": raw, "modality": modality, "shown": shown}
        session.prepare(raw, modality, adapter)
        return shown, kept, empty_prompts(), None, None, f"opened {Path(path).name} ({modality}); no prompts"

    @guarded
    def api_segment(image, points_json: str, box_json: str, adapter: str = ""):
        """API: image + JSON points `[[x, y, label], ...]` + JSON box `[x0, y0, x1, y1]` or "" (+ an adapter
        name, "" for the active one) -> mask (0/255 PNG)."""
        if image is None:
            raise ValueError("no image.")
        try:
            points = json.loads(points_json) if points_json else []
            box = json.loads(box_json) if box_json else None
        except json.JSONDecodeError as error:
            raise ValueError(f"points/box must be JSON ({error}).") from None
        mask = session.segment(image, points, box, adapter=adapter or None)
        return mask

    # --- volumes
    @guarded
    def open_volume(files, adapter):
        if not files:
            return None, gr.update(), None, "no volume"
        paths = [f if isinstance(f, str) else f.name for f in (files if isinstance(files, list) else [files])]
        volume = VolumeSession(paths, session, adapter or None)
        middle = len(volume.slices) // 2
        volume.prepare(middle)
        shown = f"{len(volume.slices)} axial slices, {volume.modality}"
        return volume, gr.update(maximum=len(volume.slices) - 1, value=middle), volume.show(middle), shown

    def on_slice(volume, index):
        if volume is None:
            return None
        if volume.displayed == int(index):
            # already on screen (opening a volume moves the slider to the slice it shows): sending the same
            # picture again makes Gradio rewrite its cached file while the browser may still be reading it
            return gr.update()
        return volume.show(int(index))

    @guarded
    def click_volume(volume, index, mode, adapter, evt: gr.SelectData):
        if volume is None:
            raise ValueError("upload a volume first.")
        index = int(index)
        x, y = evt.index
        prompts = add_prompt(volume.prompts_of(index), x, y, mode, volume.slices.shape[1:])
        view = volume.set_prompts(index, prompts, adapter or None)
        return view, volume.save(), f"slice {index}: {describe(prompts)}"

    @guarded
    def undo_volume(volume, index):
        if volume is None:
            return None, None, "no volume"
        index = int(index)
        view = volume.set_prompts(index, undo_prompt(volume.prompts_of(index)))
        return view, volume.save(), f"slice {index}: {describe(volume.prompts_of(index))}"

    @guarded
    def propagate_volume(volume, index):
        if volume is None:
            raise ValueError("upload a volume first.")
        message = volume.propagate(int(index))
        # the shown slice is the seed, which propagation leaves as it was: re-sending the same picture makes
        # Gradio rewrite its cached file while the browser may still be reading it
        return gr.update(), volume.save(), message

    with gr.Blocks(title="Medical SAM Adapter") as demo:
        gr.Markdown(
            "## Medical SAM Adapter\nClick the structure (negative clicks remove regions) or draw a box by "
            "clicking two opposite corners. Volumes: prompt a slice, then propagate. Research demo, "
            "**not for clinical use**."
        )
        adapter = gr.Dropdown(
            session.adapters, value=session.adapters[0] if session.adapters else None, label="task adapter",
            visible=len(session.adapters) > 1, elem_id="task-adapter",
        )  # fmt: skip
        prompts = gr.State(empty_prompts())
        raw = gr.State(None)  # a DICOM's own units (HU), segmented instead of the 8-bit picture shown
        with gr.Tab("2-D image"):
            with gr.Row():
                image = gr.Image(
                    label="image (click to prompt)", type="numpy", image_mode="RGB", elem_id="prompt-image"
                )
                result = gr.Image(
                    label="mask overlay", type="numpy", interactive=False, elem_id="result-image"
                )
            with gr.Row():
                mode = gr.Radio(
                    [POSITIVE, NEGATIVE, BOX], value=POSITIVE, label="a click adds", elem_id="mode"
                )
                status = gr.Textbox(label="prompts", interactive=False, elem_id="status")
                undo_button = gr.Button("undo")
                clear_button = gr.Button("clear")
            takes_text = getattr(getattr(model, "config", None), "text_embedding_dim", None) is not None
            with gr.Row(visible=takes_text):
                text = gr.Textbox(
                    label="or describe the target", placeholder="e.g. grey matter", elem_id="text"
                )
                text_button = gr.Button("segment by text")
            with gr.Row():
                upload = gr.File(label="or open a file (PNG, JPEG, TIFF, DICOM .dcm)", file_types=IMAGE_TYPES)
                mask = gr.Image(label="mask (download)", type="numpy", interactive=False, format="png")
            examples = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.png"))
            if examples:  # axial slices of the MNI152 template (McGill notice in the Space README)
                gr.Examples(
                    examples=[[e] for e in examples], inputs=[image], label="examples: MNI152 T1 slices"
                )
        outputs = [prompts, result, mask, status]
        image.select(on_click, [image, raw, prompts, mode, adapter], outputs)
        image.upload(lambda: (None, empty_prompts(), None, None, "no prompts"), None, [raw, *outputs]).then(
            prepare_picture, [image, raw, adapter], None
        )
        upload.upload(on_file, [upload, adapter], [image, raw, *outputs])
        undo_button.click(on_undo, [image, raw, prompts, adapter], outputs)
        text_button.click(on_text, [image, raw, text, adapter], [result, mask, status])
        clear_button.click(lambda: (empty_prompts(), None, None, "no prompts"), None, outputs)
        adapter.change(on_adapter, [image, raw, prompts, adapter], outputs)

        with gr.Tab("volume (NIfTI / DICOM series)"):
            volume_state = gr.State(None)
            volume_files = gr.File(
                label="NIfTI volume (.nii, .nii.gz) or the DICOM files of one series",
                file_types=[".nii", ".gz", ".dcm"], file_count="multiple", elem_id="volume-files",
            )  # fmt: skip
            with gr.Row():
                slice_index = gr.Slider(0, 1, step=1, value=0, label="axial slice", elem_id="slice")
                volume_mode = gr.Radio([POSITIVE, NEGATIVE, BOX], value=POSITIVE, label="a click adds")
            volume_view = gr.Image(
                label="slice (click to prompt)", type="numpy", interactive=False, elem_id="volume-view"
            )
            with gr.Row():
                volume_status = gr.Textbox(label="volume", interactive=False, elem_id="volume-status")
                volume_undo = gr.Button("undo on this slice")
                propagate_button = gr.Button("propagate through the volume", variant="primary")
            volume_mask = gr.File(label="mask volume (NIfTI, input geometry)")
            volume_files.upload(
                open_volume, [volume_files, adapter], [volume_state, slice_index, volume_view, volume_status]
            )
            slice_index.change(on_slice, [volume_state, slice_index], volume_view)
            # encode the slice's window once the slider is let go, so its first click only decodes
            slice_index.release(
                lambda v, i: v.prepare(int(i)) if v else None, [volume_state, slice_index], None
            )
            volume_view.select(
                click_volume,
                [volume_state, slice_index, volume_mode, adapter],
                [volume_view, volume_mask, volume_status],
            )
            volume_undo.click(
                undo_volume, [volume_state, slice_index], [volume_view, volume_mask, volume_status]
            )
            propagate_button.click(
                propagate_volume, [volume_state, slice_index], [volume_view, volume_mask, volume_status]
            )
        with gr.Row(visible=False):
            api_image = gr.Image(type="numpy")
            api_points = gr.Textbox()
            api_box = gr.Textbox()
            api_adapter = gr.Textbox(value="")
            api_mask = gr.Image(type="numpy", format="png")
        gr.Button(visible=False).click(
            api_segment, [api_image, api_points, api_box, api_adapter], api_mask, api_name="segment"
        )
    return demo


def load_model() -> Any:
    """The model the Space serves (see `load_served`)."""
    return load_served()[0]


def load_served() -> tuple[Any, Any]:
    """`(model, processor)`: the model the Space serves and the `MsaProcessor` saved with it.

    The model (or, with adapters, the base) is `MSA_MODEL` / `MSA_BASE` (a Hub id or folder), else the id in
    `msa_model.txt` (written by `msa_hf.hub.push.push_space`), else msa_hf's shipped base. Task adapters:
    `MSA_ADAPTERS` (JSON `{"name": "adapter repo or folder", ...}`) or `adapters.json` beside this file.
    """
    from msa_hf import TINY_BASE
    from msa_hf.hub.task_adapters import load_task_adapters
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.processing.processor import MsaProcessor

    here = Path(__file__).parent
    pinned = here / "msa_model.txt"
    default = pinned.read_text().strip() if pinned.is_file() else TINY_BASE
    adapters = os.environ.get("MSA_ADAPTERS") or (
        (here / "adapters.json").read_text() if (here / "adapters.json").is_file() else ""
    )
    if adapters:
        base = os.environ.get("MSA_BASE", default)
        model = load_task_adapters(base, json.loads(adapters))
        return model, MsaProcessor.from_pretrained(base, model)
    return load_for_inference(os.environ.get("MSA_MODEL", default))


if __name__ == "__main__":
    from msa_hf.inference.cpu_memory import keep_freed_memory

    keep_freed_memory()  # clicks on CPU: per-click buffers stay mapped instead of page-faulting in each time
    model, processor = load_served()
    build_demo(model, window=processor.window).launch(max_file_size=MAX_UPLOAD)
