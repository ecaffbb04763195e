# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo's Gradio page: click or box a structure on a medical image or volume and see MSA's mask.

`build_demo(model)` builds the page around any SAM-shaped model (tests inject tiny ones); `serve` loads the
served model and launches it, which is all a Space's `app.py` does (`msa_hf.hub.push.SPACE_APP`) and what
`msa-hf demo` runs on a user's own machine. The page lives in the package, not in the Space's folder, so
that an installed msa_hf can serve and publish it. The image is encoded once per upload (per depth window
for volumes) and decoded per click, as SAM's predictor does. `segment` is also an API endpoint
(`api_name="segment"`) for `gradio_client`.

Prompts: positive/negative clicks, and a box drawn by clicking two opposite corners. Volumes (NIfTI, NRRD, MetaImage or a
DICOM series): prompt any slice, then propagate its mask through the volume.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from msa_hf.data.channels import ChannelChoice, SeveralChannels
from msa_hf.data.dicom_stacks import SeveralStacks
from msa_hf.data.planes import PLANE_CHOICES
from msa_hf.demo.api import parse_api_prompts
from msa_hf.demo.prompt_state import (
    BOX,
    NEGATIVE,
    POSITIVE,
    add_prompt,
    describe,
    empty_prompts,
    has_prompt,
    undo_prompt,
)
from msa_hf.demo.sessions import MAX_VOXELS, DemoSession, VolumeSession, mask_choice
from msa_hf.demo.uploads import IMAGE_TYPES, belongs_to, read_upload, source_of
from msa_hf.evaluation.pictures import draw_prompts, overlay

if TYPE_CHECKING:
    from msa_hf.data.channels import ChannelChoice
    from msa_hf.inference.placement import Placement

MAX_UPLOAD = "500mb"
# axial slices of the MNI152 template, shipped with the package (their notice: README.md beside them)
EXAMPLES = Path(__file__).resolve().parent / "examples"
MASK_CHOICES = ["best", "1", "2", "3"]  # the radio's values: SAM's rule, or one of its three masks
__all__ = ["EXAMPLES", "MAX_UPLOAD", "build_demo", "load_served", "serve"]


# ----------------------------------------------------------------------------------------- app
INTERNAL = {"api_visibility": "private"}  # the page's own events: not part of the documented API


def guarded(function):
    """Show bad input as a message in the page, never as a stack trace."""

    @functools.wraps(function)  # Gradio reads the signature (gr.SelectData) through __wrapped__
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, RuntimeError, OSError) as error:
            raise gr.Error(str(error)) from None

    return run


def analytics_allowed() -> bool:
    """Whether the page may send Gradio's usage analytics to Gradio's servers: only when the user sets
    `GRADIO_ANALYTICS_ENABLED=True`. The page serves medical images on hospital machines and laptops, where
    nothing should leave the machine unasked (Gradio's own default is on)."""
    return os.environ.get("GRADIO_ANALYTICS_ENABLED") == "True"


def build_demo(
    model: Any,
    window: Any = None,
    slice_spacing: float | None = None,
    trained_planes: tuple[str, ...] | None = None,
    device: str | Placement | None = None,
    dtype: str | None = None,
    channel: ChannelChoice | None = None,
) -> gr.Blocks:
    """The Gradio app around `model` (a `SamAdapterModel`, any model with SAM's interface, or a peft model
    holding several task adapters: `msa_hf.hub.task_adapters.load_task_adapters`), served with its
    processor's CT `window`, its training planes and, for a depth-branch model, its training `slice_spacing`,
    on `device` in `dtype` (`placement.resolve_placement`: default a GPU in bfloat16 where there is one), reading
    the `channel` it was trained on of a 4-D upload (`MsaProcessor.channel_choice`)."""
    session = DemoSession(
        model, window=window, slice_spacing=slice_spacing, trained_planes=trained_planes, device=device,
        dtype=dtype, channel=channel,
    )  # fmt: skip
    takes_text = getattr(getattr(model, "config", None), "text_embedding_dim", None) is not None
    with gr.Blocks(title="Medical SAM Adapter", analytics_enabled=analytics_allowed()) as demo:
        gr.Markdown(
            "## Medical SAM Adapter\nClick the structure (negative clicks remove regions) or draw a box by "
            "clicking two opposite corners. Volumes: prompt a slice, then propagate. Research demo, "
            "**not for clinical use**. This demo serves one request at a time; others wait in the queue."
        )
        adapter = gr.Dropdown(
            session.adapters, value=session.adapters[0] if session.adapters else None, label="task adapter",
            visible=len(session.adapters) > 1, elem_id="task-adapter",
        )  # fmt: skip
        with gr.Tab("2-D image"):
            image_tab(session, adapter, takes_text)
        with gr.Tab("volume (NIfTI / NRRD / MHA / DICOM)"):
            volume_tab(session, adapter)
        segment_endpoint(session)
        volume_endpoint(session)
    demo.queue(default_concurrency_limit=1)  # one request at a time, as the page says
    return demo


def image_tab(session: DemoSession, adapter: gr.Dropdown, takes_text: bool) -> None:
    """The 2-D tab: a picture (upload, example or opened file), clicks and a box, undo, text, the mask."""

    def render(image, raw, prompts, adapter, which):
        source, modality = source_of(image, raw)
        if not has_prompt(prompts):
            picture = overlay(image, np.zeros(np.asarray(image).shape[:2], bool), margin=None, scale=1)
            answer = (None, "", None)
        else:
            found = session.segment_masks(
                source, prompts["points"], prompts["box"], modality, adapter, choice=mask_choice(which)
            )
            picture = overlay(image, found.mask > 0, margin=None, scale=1)
            answer = (found.mask, found.describe(), session.probability_file(found.probabilities))
        marked = draw_prompts(picture, prompts["points"], prompts["box"], prompts["corner"])
        mask, scores, probabilities = answer
        return np.asarray(marked), mask, describe(prompts), scores, probabilities

    @guarded
    def on_click(image, raw, prompts, mode, adapter, which, evt: gr.SelectData):
        if image is None:
            raise ValueError("upload an image first.")
        x, y = evt.index
        prompts = add_prompt(prompts, x, y, mode, np.asarray(image).shape)
        return prompts, *render(image, raw, prompts, adapter, which)

    @guarded
    def on_undo(image, raw, prompts, adapter, which):
        prompts = undo_prompt(prompts)
        if image is None:
            return prompts, None, None, describe(prompts), "", None
        return prompts, *render(image, raw, prompts, adapter, which)

    @guarded
    def on_text(image, raw, text, adapter):
        if image is None:
            raise ValueError("upload an image first.")
        if not (text or "").strip():
            raise ValueError("type a description of the target first.")
        source, modality = source_of(image, raw)
        found = session.segment_masks(source, [], None, modality, adapter, text=text)
        picture = overlay(image, found.mask > 0, margin=None, scale=1)
        probabilities = session.probability_file(found.probabilities)
        return np.asarray(picture), found.mask, f"text: {text.strip()}", found.describe(), probabilities

    @guarded
    def prepare_picture(image, raw, adapter):
        if image is not None:
            session.prepare(*source_of(image, raw), adapter)

    @guarded
    def on_adapter(image, raw, prompts, adapter, which):
        if image is None or not has_prompt(prompts):
            prepare_picture(image, raw, adapter)
            return prompts, gr.update(), gr.update(), describe(prompts), gr.update(), gr.update()
        return prompts, *render(image, raw, prompts, adapter, which)

    @guarded
    def on_which(image, raw, prompts, adapter, which):
        if image is None or not has_prompt(prompts):
            return prompts, gr.update(), gr.update(), describe(prompts), gr.update(), gr.update()
        return prompts, *render(image, raw, prompts, adapter, which)

    @guarded
    def on_file(file, adapter):
        if file is None:
            return gr.update(), None, *cleared()
        path = file if isinstance(file, str) else file.name
        shown, raw, modality = read_upload(path, session.window)
        kept = {"image": raw, "modality": modality, "shown": shown}
        session.prepare(raw, modality, adapter)
        prompts, result, mask, _, scores, probabilities = cleared()
        opened = f"opened {Path(path).name} ({modality}); no prompts"
        return shown, kept, prompts, result, mask, opened, scores, probabilities

    def on_new_image(image, raw):
        """A new picture (an upload, an example, or none): prompts, overlay and mask start afresh; an opened
        file's raw data stays only while its picture is the one on screen."""
        kept = raw if belongs_to(image, raw) else None
        return kept, *cleared()

    def cleared():
        """The outputs with nothing segmented: no prompts, no overlay, mask, scores or probabilities."""
        return empty_prompts(), None, None, "no prompts", "", None

    prompts = gr.State(empty_prompts())
    raw = gr.State(None)  # a DICOM's own units (HU), segmented instead of the 8-bit picture shown
    with gr.Row():
        image = gr.Image(
            label="image (click to prompt)", type="numpy", image_mode="RGB", elem_id="prompt-image"
        )
        result = gr.Image(label="mask overlay", type="numpy", interactive=False, elem_id="result-image")
    with gr.Row():
        mode = gr.Radio([POSITIVE, NEGATIVE, BOX], value=POSITIVE, label="a click adds", elem_id="mode")
        status = gr.Textbox(label="prompts", interactive=False, elem_id="status")
        undo_button = gr.Button("undo")
        clear_button = gr.Button("clear")
    with gr.Row(visible=takes_text):
        text = gr.Textbox(label="or describe the target", placeholder="e.g. grey matter", elem_id="text")
        text_button = gr.Button("segment by text")
    with gr.Row():
        which = gr.Radio(
            MASK_CHOICES, value=MASK_CHOICES[0], elem_id="mask-choice",
            label="mask shown: the best by predicted IoU, or one of SAM's three (part, whole, surroundings)",
        )  # fmt: skip
        scores = gr.Textbox(label="predicted IoU", interactive=False, elem_id="mask-scores")
    with gr.Row():
        upload = gr.File(label="or open a file (PNG, JPEG, TIFF, DICOM .dcm)", file_types=IMAGE_TYPES)
        mask = gr.Image(label="mask (download)", type="numpy", interactive=False, format="png")
        probabilities = gr.File(label="probability map (download, float32 TIFF)", elem_id="probabilities")
    examples = sorted(str(p) for p in EXAMPLES.glob("*.png"))
    if examples:
        gr.Examples(
            examples=[[e] for e in examples], inputs=[image], label="examples: MNI152 T1 slices",
            api_visibility="private",
        )  # fmt: skip
    outputs = [prompts, result, mask, status, scores, probabilities]
    image.select(on_click, [image, raw, prompts, mode, adapter, which], outputs, **INTERNAL)
    # any new picture (an upload, an example, a removal) resets the prompts, the overlay and the mask
    image.change(on_new_image, [image, raw], [raw, *outputs], **INTERNAL).then(
        prepare_picture, [image, raw, adapter], None, **INTERNAL
    )
    upload.upload(on_file, [upload, adapter], [image, raw, *outputs], **INTERNAL)
    undo_button.click(on_undo, [image, raw, prompts, adapter, which], outputs, **INTERNAL)
    text_button.click(
        on_text, [image, raw, text, adapter], [result, mask, status, scores, probabilities], **INTERNAL
    )
    clear_button.click(cleared, None, outputs, **INTERNAL)
    adapter.change(on_adapter, [image, raw, prompts, adapter, which], outputs, **INTERNAL)
    which.change(on_which, [image, raw, prompts, adapter, which], outputs, **INTERNAL)


def volume_tab(session: DemoSession, adapter: gr.Dropdown) -> None:
    """The volume tab: a volume file (NIfTI, NRRD, MetaImage) or DICOM files (a series; a study, whose series the visitor picks), prompts
    per slice, propagation, the mask volume (in the file's format, NIfTI for DICOM; DICOM-SEG or RT structure set for a DICOM series)."""

    @guarded
    def open_volume(previous, files, adapter, series=None, plane="auto", channel=None):
        if previous is not None:  # replaced by what opens now (or by nothing): free what it holds
            previous.close()
        hidden = gr.update(choices=[], value=None, visible=False)
        if not files:
            return None, gr.update(), None, "no volume", hidden, hidden
        paths = [f if isinstance(f, str) else f.name for f in (files if isinstance(files, list) else [files])]
        chosen = None if channel in (None, "") else ChannelChoice(index=int(channel), origin="the page")
        try:
            volume = VolumeSession(
                paths, session, adapter or None, series=series or None, plane=plane or "auto", channel=chosen
            )
        except SeveralStacks as several:  # a study's series: the visitor chooses one
            choices = [(stack.describe(), stack.key) for stack in several.stacks]
            chooser = gr.update(choices=choices, value=None, visible=True)
            message = f"the files hold {len(choices)} image stacks (series); choose the one to open."
            return None, gr.update(), None, message, chooser, hidden
        except SeveralChannels as several:  # a multi-channel scan (MRI sequences): the visitor chooses one
            chooser = gr.update(
                choices=[(label, str(index)) for label, index in several.choices()], value=None, visible=True
            )
            return None, gr.update(), None, str(several), hidden, chooser
        middle = len(volume.slices) // 2
        volume.prepare(middle)
        shown = f"{len(volume.slices)} {volume.plane} slices, {volume.modality}"
        if volume.sliced.resampling is not None:  # what the model sees is not what is shown: say so
            shown += f"; {volume.sliced.resampling.describe()}"
        for note in volume.sliced.notes:
            shown += f". {note}"
        if chosen is not None:
            shown += f", channel {volume.channel_name or channel}"
        # a chosen series or channel stays shown, to choose another
        return (
            volume,
            gr.update(maximum=len(volume.slices) - 1, value=middle, label=f"{volume.plane} slice"),
            volume.show(middle),
            shown,
            gr.update() if series else hidden,
            gr.update() if chosen is not None else hidden,
        )

    def choose_series(previous, files, adapter, series, plane, channel):
        if not series:  # the choices were just offered (or cleared): nothing chosen yet
            return (gr.update(),) * 6
        return open_volume(previous, files, adapter, series, plane, channel)

    def choose_channel(previous, files, adapter, series, plane, channel):
        if channel in (None, ""):  # the choices were just offered (or cleared): nothing chosen yet
            return (gr.update(),) * 6
        return open_volume(previous, files, adapter, series, plane, channel)

    def upload_volume(
        previous, files, adapter, plane
    ):  # new files: no series or channel chosen among them yet
        return open_volume(previous, files, adapter, None, plane)

    def choose_plane(
        previous, files, adapter, series, plane, channel
    ):  # the volume again, in another plane (prompts reset)
        return open_volume(previous, files, adapter, series, plane, channel)

    def on_slice(volume, index):
        if volume is None:
            return None
        if volume.displayed == int(index):
            # already on screen (opening a volume moves the slider to the slice it shows): sending the same
            # picture again makes Gradio rewrite its cached file while the browser may still be reading it
            return gr.update()
        return volume.show(int(index))

    @guarded
    def click_volume(volume, index, mode, adapter, which, evt: gr.SelectData):
        if volume is None:
            raise ValueError("upload a volume first.")
        index = int(index)
        x, y = evt.index
        prompts = add_prompt(volume.prompts_of(index), x, y, mode, volume.slices.shape[1:])
        view = volume.set_prompts(index, prompts, adapter or None, choice=mask_choice(which))
        return view, volume.save(), volume.describe(index)

    @guarded
    def undo_volume(volume, index, which):
        if volume is None:
            return None, None, "no volume"
        index = int(index)
        view = volume.set_prompts(index, undo_prompt(volume.prompts_of(index)), choice=mask_choice(which))
        return view, volume.save(), volume.describe(index)

    @guarded
    def choose_volume_mask(volume, index, adapter, which):
        if volume is None or not has_prompt(volume.prompts_of(int(index))):
            return gr.update(), gr.update(), gr.update()  # nothing segmented on this slice yet
        index = int(index)
        view = volume.set_prompts(index, volume.prompts_of(index), adapter or None, choice=mask_choice(which))
        return view, volume.save(), volume.describe(index)

    @guarded
    def propagate_volume(volume, index, threshold, first, last):
        if volume is None:
            raise ValueError("upload a volume first.")
        top = len(volume.slices) - 1
        low = 0 if first in (None, "") else int(first)
        high = top if last in (None, "") or int(last) < 0 else int(last)
        message = volume.propagate(int(index), stop_score=float(threshold), slice_range=(low, min(high, top)))
        # the shown slice is the seed, which propagation leaves as it was: re-sending the same picture makes
        # Gradio rewrite its cached file while the browser may still be reading it
        return gr.update(), volume.save(), message

    @guarded
    def keep_volume_structure(volume, index, name):
        if volume is None:
            raise ValueError("upload a volume first.")
        message = volume.keep_structure(name or "")
        return volume.show(int(index)), volume.save(), message, ""  # the next structure's name starts empty

    def dicom_of_volume(kind: str):
        @guarded
        def save(volume, name):
            if volume is None:
                raise ValueError("upload a volume first.")
            return volume.save_dicom(kind, name=name or "")

        return save

    @guarded
    def volume_report_of_volume(volume, name):
        if volume is None:
            raise ValueError("upload a volume first.")
        return list(volume.save_volume_report(name=name or ""))

    @guarded
    def structure_files_of_volume(volume, name):
        if volume is None:
            raise ValueError("upload a volume first.")
        return volume.save_structure_files(name=name or "")

    # a visitor's volume: closed when another replaces it, or when Gradio drops the session (an hour after the
    # visitor leaves), so its embeddings and temporary files do not outlive it
    volume_state = gr.State(
        None, delete_callback=lambda volume: volume.close() if volume is not None else None
    )
    volume_files = gr.File(
        label="a volume file (NIfTI .nii/.nii.gz, NRRD .nrrd, MetaImage .mha), DICOM files (a series, or a study "
              "to pick a series from), or a .zip of them (a PACS export)",
        file_types=[".nii", ".gz", ".nrrd", ".mha", ".dcm", ".zip"], file_count="multiple", elem_id="volume-files",
    )  # fmt: skip
    volume_series = gr.Radio(
        [], label="the files hold several image stacks (a study's series): open", visible=False,
        elem_id="volume-series",
    )  # fmt: skip
    volume_channel = gr.Radio(
        [], label="the file holds several channels (MRI sequences, time points): open", visible=False,
        elem_id="volume-channel",
    )  # fmt: skip
    with gr.Row():
        slice_index = gr.Slider(0, 1, step=1, value=0, label="axial slice", elem_id="slice")
        volume_mode = gr.Radio([POSITIVE, NEGATIVE, BOX], value=POSITIVE, label="a click adds")
        volume_plane = gr.Radio(
            list(PLANE_CHOICES), value="auto", elem_id="volume-plane",
            label="plane (auto: as acquired)",
        )  # fmt: skip
    volume_view = gr.Image(
        label="slice (click to prompt)", type="numpy", interactive=False, elem_id="volume-view"
    )
    volume_which = gr.Radio(
        MASK_CHOICES, value=MASK_CHOICES[0], elem_id="volume-mask-choice",
        label="mask shown on the slice: the best by predicted IoU, or one of SAM's three (part, whole, surroundings)",
    )  # fmt: skip
    with gr.Row():
        volume_status = gr.Textbox(label="volume", interactive=False, elem_id="volume-status")
        volume_undo = gr.Button("undo on this slice")
        propagate_button = gr.Button("propagate through the volume", variant="primary")
    with gr.Row():
        stop_score = gr.Slider(
            0.0, 1.0, value=0.5, step=0.05, elem_id="stop-score",
            label="propagation stops where the predicted IoU falls below",
        )  # fmt: skip
        first_slice = gr.Number(value=0, precision=0, label="from slice", elem_id="first-slice")
        last_slice = gr.Number(value=-1, precision=0, label="to slice (-1: the last)", elem_id="last-slice")
    volume_mask = gr.File(label="mask volume (the input's format and geometry; NIfTI for DICOM)")
    with gr.Row():
        structure_name = gr.Textbox(
            label="structure name (what a PACS or a planning system lists it as)",
            placeholder="segmented structure", elem_id="structure-name",
        )  # fmt: skip
        keep_button = gr.Button(
            "keep this structure, segment another (kept ones: outlined, and in every download)",
            elem_id="keep-structure",
        )  # fmt: skip
    with gr.Row():
        files_button = gr.Button("one mask file per structure (zip; each whole where structures overlap)")
        volume_files_zip = gr.File(label="a mask file per structure (zip)", elem_id="volume-structure-files")
    with gr.Row():
        seg_button = gr.Button("DICOM-SEG of the mask (a DICOM series, for a PACS or a viewer)")
        volume_seg = gr.File(label="mask as DICOM-SEG", elem_id="volume-seg")
    with gr.Row():
        rtstruct_button = gr.Button("RT structure set of the mask (a DICOM series, for a planning system)")
        volume_rtstruct = gr.File(label="mask as RT structure set (contours)", elem_id="volume-rtstruct")
    with gr.Row():
        report_button = gr.Button(
            "each structure's volume as a DICOM report (SR), with the DICOM-SEG it references (a DICOM series)"
        )
        volume_report = gr.File(
            label="DICOM-SEG and volume report", file_count="multiple", elem_id="volume-report"
        )  # fmt: skip
    keep_button.click(
        keep_volume_structure,
        [volume_state, slice_index, structure_name],
        [volume_view, volume_mask, volume_status, structure_name],
        **INTERNAL,
    )
    files_button.click(
        structure_files_of_volume, [volume_state, structure_name], volume_files_zip, **INTERNAL
    )
    seg_button.click(dicom_of_volume("seg"), [volume_state, structure_name], volume_seg, **INTERNAL)
    rtstruct_button.click(
        dicom_of_volume("rtstruct"), [volume_state, structure_name], volume_rtstruct, **INTERNAL
    )  # fmt: skip
    report_button.click(
        volume_report_of_volume, [volume_state, structure_name], volume_report, **INTERNAL
    )  # fmt: skip
    opened = [volume_state, slice_index, volume_view, volume_status, volume_series, volume_channel]
    chosen = [volume_state, volume_files, adapter, volume_series, volume_plane, volume_channel]
    volume_files.upload(
        upload_volume, [volume_state, volume_files, adapter, volume_plane], opened, **INTERNAL
    )  # fmt: skip
    volume_series.change(choose_series, chosen, opened, **INTERNAL)
    volume_channel.change(choose_channel, chosen, opened, **INTERNAL)
    volume_plane.change(choose_plane, chosen, opened, **INTERNAL)
    slice_index.change(on_slice, [volume_state, slice_index], volume_view, **INTERNAL)
    # encode the slice's window once the slider is let go, so its first click only decodes
    slice_index.release(
        lambda v, i: v.prepare(int(i)) if v else None, [volume_state, slice_index], None, **INTERNAL
    )
    volume_view.select(
        click_volume,
        [volume_state, slice_index, volume_mode, adapter, volume_which],
        [volume_view, volume_mask, volume_status],
        **INTERNAL,
    )
    volume_undo.click(
        undo_volume,
        [volume_state, slice_index, volume_which],
        [volume_view, volume_mask, volume_status],
        **INTERNAL,
    )
    volume_which.change(
        choose_volume_mask,
        [volume_state, slice_index, adapter, volume_which],
        [volume_view, volume_mask, volume_status],
        **INTERNAL,
    )
    propagate_button.click(
        propagate_volume,
        [volume_state, slice_index, stop_score, first_slice, last_slice],
        [volume_view, volume_mask, volume_status],
        **INTERNAL,
    )


def volume_endpoint(session: DemoSession) -> None:
    """The documented API endpoint `/segment_volume`: a volume (a NIfTI, NRRD or MetaImage file, or the DICOM
    files of one series), a slice, clicks and a box on it, and whether to propagate -> the mask on the input's
    grid (in its format; NIfTI for DICOM)
    and a status line (hidden components carry its named inputs and outputs)."""

    @guarded
    def api_segment_volume(
        volume,
        slice,
        points: str,
        box: str,
        propagate: bool,
        adapter: str = "",
        channel: str = "",  # noqa: A002
    ):
        """API: volume files + display slice + JSON points `[[x, y, label], ...]` + JSON box or "" + propagate
        (+ an adapter name, "" for the active one; + the channel of a multi-channel scan, a number, "" for the
        model's own) -> (mask file, status)."""
        files = [f if isinstance(f, str) else f.name for f in (volume or [])]
        if not files:
            raise ValueError(
                "volume: none was sent; send one volume file (NIfTI, NRRD, MetaImage) or the DICOM files of one series."
            )
        if slice is None or float(slice) != int(slice):
            raise ValueError(f"slice: got {slice!r}; send the slice's index, as the page's slider shows it.")
        clicks, corners = parse_api_prompts(points, box)
        chosen = ChannelChoice.parse(channel) if str(channel or "").strip() else None
        return session.segment_volume(
            files, int(slice), clicks, corners, bool(propagate), adapter or None, channel=chosen
        )

    with gr.Row(visible=False):
        api_volume = gr.File(file_count="multiple", label="volume")
        api_slice = gr.Number(precision=0, label="slice")
        api_points = gr.Textbox(label="points")
        api_box = gr.Textbox(label="box")
        api_propagate = gr.Checkbox(value=False, label="propagate")
        api_adapter = gr.Textbox(value="", label="adapter")
        api_channel = gr.Textbox(value="", label="channel")
        api_mask = gr.File(label="mask")
        api_status = gr.Textbox(label="status")
    gr.Button(visible=False).click(
        api_segment_volume, [api_volume, api_slice, api_points, api_box, api_propagate, api_adapter, api_channel],
        [api_mask, api_status], api_name="segment_volume",
        api_description="Segment a volume (`volume`: one NIfTI, NRRD or MetaImage file, or the DICOM files of one series) on its "
        "slice `slice` as the page shows it (axial, 0 the most inferior, unless the volume was acquired in "
        "another plane) with clicks `points` and/or `box` (as /segment takes them, in that slice's pixels), "
        "carried through the volume when `propagate` (`channel`: the one to read of a multi-channel scan, by number, "
        "where the model records none); returns the mask on the input's grid (in its format; NIfTI for DICOM) and what was "
        "done.",
    )  # fmt: skip


def segment_endpoint(session: DemoSession) -> None:
    """The documented API endpoint `/segment` for a picture (hidden components carry its named inputs and
    output)."""

    @guarded
    def api_segment(image, points: str, box: str, adapter: str = ""):
        """API: image + JSON points `[[x, y, label], ...]` + JSON box `[x0, y0, x1, y1]` or "" (+ an adapter
        name, "" for the active one) -> mask (0/255 PNG)."""
        if image is None:
            raise ValueError("image: none was sent; send the picture to segment.")
        clicks, corners = parse_api_prompts(points, box)
        return session.segment(image, clicks, corners, adapter=adapter or None)

    with gr.Row(visible=False):
        api_image = gr.Image(type="numpy", label="image")
        api_points = gr.Textbox(label="points")
        api_box = gr.Textbox(label="box")
        api_adapter = gr.Textbox(value="", label="adapter")
        api_mask = gr.Image(type="numpy", format="png", label="mask")
    # a documented endpoint (with /segment_volume); every other event is the page's own (api_visibility="private")
    gr.Button(visible=False).click(
        api_segment, [api_image, api_points, api_box, api_adapter], api_mask, api_name="segment",
        api_description="Segment `image` with clicks `points` (JSON [[x, y, label], ...], label 1 or 0) "
        "and/or `box` (JSON [x0, y0, x1, y1] or empty), with task adapter `adapter` (empty: the active "
        "one); returns the mask (0/255).",
    )  # fmt: skip


def load_served(
    folder: str | Path | None = None, model: str | None = None, adapters: dict[str, str] | None = None
) -> tuple[Any, Any]:
    """`(model, processor)`: the model the demo serves and the `MsaProcessor` saved with it.

    The model (or, with adapters, the base they were trained on) is `model` (a Hub id or folder), else
    `MSA_MODEL` (`MSA_BASE` with adapters), else the id in `folder`/`msa_model.txt` (a Space's folder:
    `msa_hf.hub.push.push_space` writes it), else msa_hf's shipped base. Task adapters (name -> adapter repo
    or folder): `adapters`, else `MSA_ADAPTERS` (JSON), else `folder`/`adapters.json`.
    """
    from msa_hf import TINY_BASE
    from msa_hf.hub.task_adapters import load_task_adapters
    from msa_hf.inference.loading import load_for_inference
    from msa_hf.processing.processor import MsaProcessor

    def in_folder(name: str) -> str | None:
        path = Path(folder) / name if folder is not None else None
        return path.read_text().strip() if path is not None and path.is_file() else None

    default = in_folder("msa_model.txt") or TINY_BASE
    listed = os.environ.get("MSA_ADAPTERS") or in_folder("adapters.json")
    adapters = adapters or (json.loads(listed) if listed else None)
    if adapters:
        base = model or os.environ.get("MSA_BASE", default)
        served = load_task_adapters(base, adapters)
        return served, MsaProcessor.from_pretrained(base, served)
    return load_for_inference(model or os.environ.get("MSA_MODEL", default))


def serve(
    folder: str | Path | None = None,
    model: str | None = None,
    adapters: dict[str, str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    **launch_options: Any,
) -> None:
    """Load the served model (`load_served(folder, model, adapters)`) and serve the page until interrupted,
    on `device` in `dtype` (else `MSA_DEVICE` and `MSA_DTYPE`, a Space's settings; else a GPU in bfloat16
    where there is one, the CPU in float32 otherwise: `placement.resolve_placement`, checked before the model
    loads). On ZeroGPU hardware, images are encoded on the GPU it lends per call, in `dtype` (default
    bfloat16), and clicks decoded on the CPU (`zero_gpu`), unless `device` is "cpu". `launch_options` go to
    Gradio's `launch` (e.g. `server_port`, `share`). Meant for a process of its own: it sets this process's
    volume limit to the demo's (`MSA_HF_MAX_VOXELS`, unless set) and keeps freed memory mapped."""
    from msa_hf.demo.zero_gpu import running_on_zero_gpu, zero_gpu_placement
    from msa_hf.inference.cpu_memory import keep_freed_memory
    from msa_hf.inference.placement import cpu_precision_tip, resolve_placement

    keep_freed_memory()  # clicks on CPU: per-click buffers stay mapped instead of page-faulting in each time
    # the demo's volume limit, checked from each file's header before any voxel is read (msa_hf.data.size_limits)
    os.environ.setdefault("MSA_HF_MAX_VOXELS", str(MAX_VOXELS))
    # Gradio's module-level analytics (errors, integrations) read the variable itself: off unless asked for
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    device, dtype = (
        device or os.environ.get("MSA_DEVICE") or None,
        dtype or os.environ.get("MSA_DTYPE") or None,
    )
    # ZeroGPU hardware lends a GPU per call: the encoder runs there, the clicks on this CPU (`zero_gpu`);
    # MSA_DEVICE=cpu keeps everything on the CPU
    lent_gpu = running_on_zero_gpu() and device != "cpu"
    if not lent_gpu:  # a device or dtype this machine cannot serve: said before the model loads
        resolve_placement(device, dtype)
    served, processor = load_served(folder, model, adapters)
    if lent_gpu:
        device, dtype = zero_gpu_placement(served, dtype), None
    elif tip := cpu_precision_tip(device, dtype, served):  # a Space's owner reads it in the Space's logs
        print(f"note: {tip} In a Space: MSA_DTYPE=bfloat16.", file=sys.stderr)
    build_demo(
        served,
        window=processor.window,
        slice_spacing=processor.slice_spacing,
        trained_planes=processor.planes,
        device=device,
        dtype=dtype,
        channel=processor.channel_choice(),
    ).launch(max_file_size=MAX_UPLOAD, **launch_options)
