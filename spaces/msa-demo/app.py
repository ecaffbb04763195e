# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Gradio demo: click or box a structure on a medical image and see MSA's mask.

`build_demo(model)` builds the app around any SAM-shaped model (tests inject a tiny one; the Space loads the
model named by `MSA_MODEL`). The image is encoded once per upload and decoded per click, as SAM's predictor
does. `segment` is also an API endpoint (`api_name="segment"`) for `gradio_client`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from msa_hf.inference import Prompt, SegmentationPredictor
from msa_hf.reports import overlay

MAX_SIDE = 4096  # larger uploads are refused with a message, not processed for minutes


class DemoSession:
    """Caches the encoded image so each click costs one decoder pass."""

    def __init__(self, model: Any) -> None:
        self.predictor = SegmentationPredictor(model)
        self._key: tuple | None = None

    def segment(
        self, image: np.ndarray, points: list[list[float]], box: list[float] | None, modality: str = "other"
    ) -> tuple[np.ndarray, np.ndarray]:
        """`image` `(H, W)` or `(H, W, 3)`; `points` `[[x, y, label], ...]` (label 1 or 0); `box` `[x0, y0, x1, y1]`.

        Returns the overlay picture `(H, W, 3)` uint8 and the mask `(H, W)` uint8 (0/255).
        Raises:
            ValueError: no prompt, a click or box outside the image, an image too large.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or max(image.shape[:2]) > MAX_SIDE:
            raise ValueError(
                f"image of shape {image.shape}: expected a 2-D picture up to {MAX_SIDE} pixels a side."
            )
        if not points and not box:
            raise ValueError("add a click on the structure (or draw a box) first.")
        key = (image.shape, hash(image.tobytes()), modality)
        if key != self._key:
            self.predictor.set_image(image, modality)
            self._key = key
        prompt = Prompt(
            points=[[p[0], p[1]] for p in points] or None,
            labels=[int(p[2]) for p in points] or None,
            box=list(box) if box else None,
        )
        mask, _ = self.predictor.predict(prompt, multimask=len(points) == 1 and not box)
        return np.asarray(overlay(image, mask, margin=None, scale=1)), mask.astype(np.uint8) * 255


class VolumeSession:
    """A NIfTI volume or DICOM series in the demo: axial slices, one mask volume, NIfTI download."""

    def __init__(self, path: str) -> None:
        from msa_hf.data import axial_slices, load_volume

        self.path = path
        self.volume = load_volume(path)
        modality = self.volume.modality
        self.modality = (
            modality if modality != "other" else ("CT" if self.volume.array.min() <= -500 else "MR")
        )
        self.slices = axial_slices(self.volume.array)
        self.masks = np.zeros(self.slices.shape, np.uint8)

    def show(self, index: int) -> np.ndarray:
        """Slice `index` with its mask overlaid, `(H, W, 3)` uint8."""
        return np.asarray(overlay(self.slices[index], self.masks[index] > 0, margin=None, scale=1))

    def segment(self, session: DemoSession, index: int, points: list[list[float]]) -> np.ndarray:
        _, mask = session.segment(self.slices[index], points, None, self.modality)
        self.masks[index] = mask > 0
        return self.show(index)

    def save(self, folder: str) -> str:
        """The mask volume as NIfTI on the input's grid (its affine and voxel order)."""
        from msa_hf.data import volume_from_axial_slices
        from msa_hf.inference import _save_on_input_grid

        output = str(Path(folder) / "msa_mask.nii.gz")
        _save_on_input_grid(
            volume_from_axial_slices(self.masks), self.volume.affine, Path(self.path), Path(output)
        )
        return output


def build_demo(model: Any) -> gr.Blocks:
    """The Gradio app around `model` (a `SamAdapterModel` or any model with SAM's interface)."""
    session = DemoSession(model)

    def on_click(image, points, mode, evt: gr.SelectData):
        if image is None:
            raise gr.Error("upload an image first.")
        x, y = evt.index
        points = [*points, [x, y, 1 if mode == "positive click" else 0]]
        return points, *_render(image, points)

    def _render(image, points):
        try:
            picture, mask = session.segment(image, points, None)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return picture, mask, f"{len(points)} click(s)"

    def undo(image, points):
        points = points[:-1]
        if not points:
            return points, image, None, "no clicks"
        return points, *_render(image, points)

    def api_segment(image, points_json: str, box_json: str):
        """API: image + JSON points `[[x, y, label], ...]` + JSON box `[x0, y0, x1, y1]` or "" -> mask."""
        if image is None:
            raise gr.Error("no image.")
        try:
            points = json.loads(points_json) if points_json else []
            box = json.loads(box_json) if box_json else None
            _, mask = session.segment(image, points, box)
        except (ValueError, json.JSONDecodeError) as error:
            raise gr.Error(str(error)) from None
        return mask

    with gr.Blocks(title="Medical SAM Adapter") as demo:
        gr.Markdown(
            "## Medical SAM Adapter\nUpload a scan slice, click the structure (negative clicks remove regions). "
            "Research demo, **not for clinical use**."
        )
        points = gr.State([])
        with gr.Tab("2-D image"), gr.Row():
            image = gr.Image(
                label="image (click to prompt)", type="numpy", image_mode="RGB", elem_id="prompt-image"
            )
            result = gr.Image(label="mask overlay", type="numpy", interactive=False)
        with gr.Row():
            mode = gr.Radio(["positive click", "negative click"], value="positive click", label="click adds")
            status = gr.Textbox(label="prompts", interactive=False)
            undo_button = gr.Button("undo last click")
            clear_button = gr.Button("clear")
        mask = gr.Image(label="mask (download)", type="numpy", interactive=False, format="png")
        examples = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.png"))
        if examples:  # axial slices of the MNI152 template (McGill notice in the Space README)
            gr.Examples(examples=[[e] for e in examples], inputs=[image], label="examples: MNI152 T1 slices")
        image.select(on_click, [image, points, mode], [points, result, mask, status])
        image.upload(lambda: ([], None, None, "no clicks"), None, [points, result, mask, status])
        undo_button.click(undo, [image, points], [points, result, mask, status])
        clear_button.click(lambda: ([], None, None, "no clicks"), None, [points, result, mask, status])
        with gr.Tab("volume (NIfTI)"):
            volume_state = gr.State(None)
            volume_file = gr.File(label="NIfTI volume (.nii, .nii.gz)", file_types=[".nii", ".gz"])
            slice_index = gr.Slider(0, 1, step=1, value=0, label="axial slice")
            volume_view = gr.Image(label="slice (click to prompt)", type="numpy", interactive=False)
            volume_mask = gr.File(label="mask volume (NIfTI, input geometry)")

            def open_volume(file):
                if file is None:
                    return None, gr.update(), None
                try:
                    volume = VolumeSession(file if isinstance(file, str) else file.name)
                except ValueError as error:
                    raise gr.Error(str(error)) from None
                middle = len(volume.slices) // 2
                return volume, gr.update(maximum=len(volume.slices) - 1, value=middle), volume.show(middle)

            def click_volume(volume, index, evt: gr.SelectData):
                if volume is None:
                    raise gr.Error("upload a volume first.")
                x, y = evt.index
                try:
                    view = volume.segment(session, int(index), [[x, y, 1]])
                except ValueError as error:
                    raise gr.Error(str(error)) from None
                import tempfile

                return view, volume.save(tempfile.mkdtemp())

            volume_file.upload(open_volume, volume_file, [volume_state, slice_index, volume_view])
            slice_index.change(
                lambda v, i: v.show(int(i)) if v else None, [volume_state, slice_index], volume_view
            )
            volume_view.select(click_volume, [volume_state, slice_index], [volume_view, volume_mask])
        with gr.Row(visible=False):
            api_image = gr.Image(type="numpy")
            api_points = gr.Textbox()
            api_box = gr.Textbox()
            api_mask = gr.Image(type="numpy", format="png")
        gr.Button(visible=False).click(
            api_segment, [api_image, api_points, api_box], api_mask, api_name="segment"
        )
    return demo


def load_model() -> Any:
    """The model the Space serves: `MSA_MODEL` (a Hub id or folder), else the id in `msa_model.txt` (written by
    `msa_hf.hub.push_space`), else msa_hf's shipped base."""
    from msa_hf import TINY_BASE, SamAdapterModel

    pinned = Path(__file__).with_name("msa_model.txt")
    default = pinned.read_text().strip() if pinned.is_file() else TINY_BASE
    return SamAdapterModel.from_pretrained(os.environ.get("MSA_MODEL", default))


if __name__ == "__main__":
    build_demo(load_model()).launch()
