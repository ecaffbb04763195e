"""The Gradio demo: the segmentation function on known models, and its API endpoint through gradio_client."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msa_hf.data.dicom_stacks import SeveralStacks
from msa_hf.demo.prompt_state import BOX, NEGATIVE, POSITIVE, add_prompt, describe, empty_prompts, undo_prompt
from msa_hf.demo.sessions import DemoSession, VolumeSession
from msa_hf.demo.uploads import read_upload, source_of
from msa_hf.inference.predictor import Prompt, predict_file
from msa_hf.testing import BoxFillSam, BrightInBoxSam

gradio = pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
from msa_hf.demo import app  # noqa: E402  (the page imports gradio: after the skip)


def test_segment_follows_the_prompts():
    session = DemoSession(BoxFillSam(64))
    image = np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8)
    mask = session.segment(image, [], [10, 8, 30, 20])
    rows, cols = np.nonzero(mask)
    assert set(np.unique(mask)) == {0, 255}
    assert (cols.min(), rows.min(), cols.max(), rows.max()) == (10, 8, 30, 20)
    first = session.segment(image, [[20, 20, 1]], None)
    second = session.segment(image, [[20, 20, 1], [50, 30, 1]], None)  # the stand-in follows the last click
    assert first[20, 20] == 255 and second[30, 50] == 255 and second[20, 20] == 0
    with pytest.raises(ValueError, match="add a click"):
        session.segment(image, [], None)
    with pytest.raises(ValueError, match="outside"):
        session.segment(image, [[64, 5, 1]], None)


def test_the_page_sends_no_analytics_unless_asked(monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    assert app.build_demo(BoxFillSam(64)).analytics_enabled is False  # Gradio's default would be True
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    assert app.build_demo(BoxFillSam(64)).analytics_enabled is True


def test_segment_endpoint_through_gradio_client(tmp_path):
    from gradio_client import Client, handle_file

    demo = app.build_demo(BoxFillSam(64))
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        image = np.zeros((48, 64, 3), np.uint8)
        Image.fromarray(image).save(tmp_path / "slice.png")
        client = Client(demo.local_url, verbose=False)
        result = client.predict(
            handle_file(str(tmp_path / "slice.png")), json.dumps([[40, 24, 1]]), "", "", api_name="/segment"
        )
        mask = np.asarray(Image.open(result))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        assert mask[24, 40] == 255 and mask[5, 5] == 0
        with pytest.raises(Exception, match="add a click"):
            client.predict(handle_file(str(tmp_path / "slice.png")), "", "", "", api_name="/segment")
        with pytest.raises(Exception, match="outside"):
            client.predict(
                handle_file(str(tmp_path / "slice.png")),
                json.dumps([[70, 5, 1]]),
                "",
                "",
                api_name="/segment",
            )
    finally:
        demo.close()


CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artefacts"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does)"
)


@contextmanager
def demo_in_browser(model):
    """The demo around `model`, served on 127.0.0.1 and open in headless chromium: yields the page."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    demo = app.build_demo(model)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(demo.local_url)
            yield page
            browser.close()
    finally:
        demo.close()


def _visible_box(page, selector: str) -> dict:
    """The on-screen box of the first element matching `selector`, once it is visible, scrolled into the
    viewport (a click at coordinates below it reaches nothing)."""
    element = page.locator(selector).first
    element.wait_for(state="visible", timeout=30_000)
    element.scroll_into_view_if_needed()
    return element.bounding_box()


@pytest.mark.browser
@needs_chromium
def test_click_in_a_real_browser_shows_the_overlay(tmp_path):
    """Upload a slice, click it, see the overlay appear, then draw a box; screenshots are kept as artefacts."""
    image = np.full((96, 128, 3), 40, np.uint8)
    image[30:60, 40:90] = 200
    Image.fromarray(image).save(tmp_path / "slice.png")
    with demo_in_browser(BoxFillSam(64)) as page:
        page.locator("#prompt-image input[type=file]").set_input_files(str(tmp_path / "slice.png"))
        box = _visible_box(page, "#prompt-image img")

        def clicks_shown() -> list[str]:
            return [e.input_value() for e in page.locator("textarea, input[type=text]").all()]

        # the upload handler resets the prompts; a click landing before it finishes is undone, so retry
        for _ in range(5):
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)
            page.wait_for_timeout(2000)
            if any(value.endswith("click(s)") for value in clicks_shown()):
                break
        assert any(value.endswith("click(s)") for value in clicks_shown()), clicks_shown()
        page.wait_for_function("document.querySelectorAll('img').length >= 2", timeout=30_000)
        page.screenshot(path=str(ARTEFACTS / "demo-click.png"), full_page=True)
        # a box: box mode, then two opposite corners
        page.get_by_label("box (click two corners)").check()
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        page.wait_for_function(
            "[...document.querySelectorAll('#status textarea')].some(e => e.value.includes('opposite corner'))",
            timeout=30_000,
        )
        page.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.65)
        page.wait_for_function(
            "[...document.querySelectorAll('#status textarea')].some(e => e.value.endsWith('click(s), box'))",
            timeout=30_000,
        )
        page.screenshot(path=str(ARTEFACTS / "demo-box.png"), full_page=True)
    assert (ARTEFACTS / "demo-click.png").stat().st_size > 10_000
    assert (ARTEFACTS / "demo-box.png").stat().st_size > 10_000


@pytest.mark.browser
@needs_chromium
def test_volume_click_and_propagation_in_a_real_browser(tmp_path):
    """Open a NIfTI volume, click its middle slice, show another of SAM's three masks, propagate; the status
    reports the mask shown and the slices reached."""
    import nibabel as nib

    data = np.random.default_rng(0).normal(100, 5, (48, 48, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "scan.nii.gz")
    with demo_in_browser(BoxFillSam(64)) as page:
        page.get_by_role("tab", name="volume (NIfTI / NRRD / MHA / DICOM)").click()
        page.locator("#volume-files input[type=file]").set_input_files(str(tmp_path / "scan.nii.gz"))
        status = "[...document.querySelectorAll('#volume-status textarea')].some(e => e.value.includes(%r))"
        page.wait_for_function(status % "9 axial slices", timeout=60_000)
        box = _visible_box(page, "#volume-view img")
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(status % "slice 4: 1 click(s); mask 1 of 3 shown", timeout=30_000)
        page.locator("#volume-mask-choice label", has_text="2").click()  # one of SAM's three masks
        page.wait_for_function(status % "slice 4: 1 click(s); mask 2 of 3 shown", timeout=30_000)
        page.get_by_role("button", name="propagate through the volume").click()
        page.wait_for_function(status % "propagated from slice 4 to slices 0-8", timeout=30_000)
        page.screenshot(path=str(ARTEFACTS / "demo-volume.png"), full_page=True)
        page.locator("#volume-plane label", has_text="coronal").click()  # the same volume, cut coronally
        page.wait_for_function(status % "48 coronal slices", timeout=60_000)


@pytest.mark.browser
@needs_chromium
def test_a_multi_channel_scan_offers_its_channels_and_opens_the_one_chosen_in_a_real_browser(tmp_path):
    """A 4-D MRI (its sequences in one file): the page lists its channels, and the one clicked opens. (An upload
    arrives without the dataset.json beside it, so the page numbers them.)"""
    import nibabel as nib

    scan = tmp_path / "brain.nii.gz"
    array = np.random.default_rng(0).normal(100, 20, (32, 32, 6, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), scan)
    with demo_in_browser(BoxFillSam(64)) as page:
        page.get_by_role("tab", name="volume (NIfTI / NRRD / MHA / DICOM)").click()
        page.locator("#volume-files input[type=file]").set_input_files(str(scan))
        status = "[...document.querySelectorAll('#volume-status textarea')].some(e => e.value.includes(%r))"
        page.wait_for_function(status % "the file holds 3 channels (0, 1, 2); choose", timeout=60_000)
        page.locator("#volume-channel label", has_text="1").click()
        page.wait_for_function(status % "6 axial slices, MR, channel 1", timeout=60_000)


@pytest.mark.browser
@needs_chromium
def test_dicom_series_click_and_its_dicom_seg_in_a_real_browser(tmp_path):
    """Open the DICOM files of a study, choose its series, click a slice, keep that structure and click
    another, ask for the masks as DICOM-SEG and RT structure set: the page offers the files."""
    import shutil

    from msa_hf.testing import sphere_volume, write_dicom_series

    ball = sphere_volume(shape=(6, 32, 32), centre=(3, 15, 16), radius=5.0)
    write_dicom_series(tmp_path / "series", np.where(ball, 300, -1000).astype(np.int16))
    files = []
    for path in sorted((tmp_path / "series").iterdir()):  # as a viewer exports them, with the .dcm suffix
        files.append(str(shutil.copy(path, tmp_path / f"{path.name}.dcm")))
    write_dicom_series(
        tmp_path / "scout", np.zeros((2, 32, 32), np.int16), series_number=1, description="scout"
    )
    for path in sorted((tmp_path / "scout").iterdir()):  # a study: another series uploaded with it
        files.append(str(shutil.copy(path, tmp_path / f"scout-{path.name}.dcm")))
    with demo_in_browser(BoxFillSam(64)) as page:
        page.get_by_role("tab", name="volume (NIfTI / NRRD / MHA / DICOM)").click()
        page.locator("#volume-files input[type=file]").set_input_files(files)
        status = "[...document.querySelectorAll('#volume-status textarea')].some(e => e.value.includes(%r))"
        page.wait_for_function(status % "the files hold 2 image stacks", timeout=60_000)
        page.locator("#volume-series label", has_text="3: 6 axial CT slices").click()  # the series to open
        page.wait_for_function(status % "6 axial slices", timeout=60_000)
        box = _visible_box(page, "#volume-view img")
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(status % "1 click(s)", timeout=30_000)
        # kept under its name, then a second structure: both go into the downloads
        page.locator("#structure-name textarea").fill("ball")
        page.locator("#keep-structure").click()
        page.wait_for_function(status % "kept 'ball'", timeout=30_000)
        box = _visible_box(page, "#volume-view img")  # the button was scrolled to: where the slice is now
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        page.wait_for_function(status % "1 click(s)", timeout=30_000)
        for button, element, file in (
            ("DICOM-SEG of the mask (a DICOM series, for a PACS or a viewer)", "volume-seg", "msa_mask_seg"),
            (
                "RT structure set of the mask (a DICOM series, for a planning system)",
                "volume-rtstruct",
                "msa_mask_rtstruct",
            ),
            (
                "one mask file per structure (zip; each whole where structures overlap)",
                "volume-structure-files",
                "msa_structures",
            ),
        ):  # each download offered: the file's name shows in its box
            page.get_by_role("button", name=button).click()
            page.wait_for_function(
                f"(document.querySelector('#{element}') || {{}}).innerText?.includes('{file}')",
                timeout=30_000,
            )


def test_volume_session_segments_slices_and_saves_on_the_input_grid(tmp_path):
    import nibabel as nib

    from msa_hf.data import axial_slices, load_nifti
    from msa_hf.testing import SCRAMBLED_AFFINE

    data = np.random.default_rng(0).normal(100, 5, (20, 12, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
    volume = VolumeSession(str(tmp_path / "scan.nii.gz"), DemoSession(BoxFillSam(32)))
    assert volume.slices.shape == (12, 20, 16) and volume.modality == "MR"
    prompts = add_prompt(empty_prompts(), 8, 10, POSITIVE, volume.slices.shape[1:])
    view = volume.set_prompts(5, prompts)
    assert view.shape == (20, 16, 3)
    saved = nib.load(volume.save(str(tmp_path)))
    assert np.allclose(saved.affine, SCRAMBLED_AFFINE) and saved.shape == data.shape
    back = axial_slices(load_nifti(volume.save(str(tmp_path)), is_label=True).array)
    assert back[5][10, 8] == 1 and back.sum() == volume.masks.sum() and not back[4].any()
    volume.set_prompts(5, undo_prompt(prompts))
    assert not volume.masks.any()


def test_prompt_state_clicks_boxes_and_undo():
    prompts = add_prompt(empty_prompts(), 3, 4, POSITIVE, (20, 30))
    prompts = add_prompt(prompts, 25, 15, BOX, (20, 30))
    assert prompts["corner"] == [25, 15] and prompts["box"] is None
    assert describe(prompts) == "1 click(s); box: click the opposite corner"
    prompts = add_prompt(prompts, 10, 2, BOX, (20, 30))
    assert prompts["box"] == [10, 2, 25, 15] and prompts["corner"] is None
    prompts = add_prompt(prompts, 5, 6, NEGATIVE, (20, 30))
    assert prompts["points"] == [[3, 4, 1], [5, 6, 0]] and describe(prompts) == "2 click(s), box"
    prompts = undo_prompt(prompts)  # the negative click
    assert prompts["points"] == [[3, 4, 1]] and prompts["box"] == [10, 2, 25, 15]
    prompts = undo_prompt(prompts)  # the box
    assert prompts["box"] is None and undo_prompt(undo_prompt(prompts)) == empty_prompts()
    with pytest.raises(ValueError, match="outside the 30x20 image"):
        add_prompt(prompts, 30, 5, POSITIVE, (20, 30))
    with pytest.raises(ValueError, match="unknown prompt mode"):
        add_prompt(prompts, 1, 1, "lasso", (20, 30))


def test_dicom_upload_is_segmented_in_its_own_units(tmp_path):
    from pydicom.data import get_testdata_file

    from msa_hf.testing import BrightInBoxSam

    shown, raw, modality = read_upload(get_testdata_file("CT_small.dcm"))
    assert modality == "CT" and shown.dtype == np.uint8 and raw.min() < -500 and shown.shape == raw.shape
    state = {"image": raw, "modality": modality, "shown": shown}
    on_screen = np.repeat(shown[..., None], 3, axis=-1)  # what the browser sends back
    source, source_modality = source_of(on_screen, state)
    assert source is raw or np.array_equal(source, raw)
    assert source_modality == "CT"
    other = on_screen.copy()
    other[0, 0] ^= 1  # an example or upload replaced the picture: segment what is shown
    assert source_of(other, state)[1] == "other"
    # the CT window decides what is bright: the mask equals the windowed picture's bright part in the box
    session = DemoSession(BrightInBoxSam(128))
    mask = session.segment(raw, [], [20, 20, 100, 100], modality)
    from msa_hf.inference.image_encoding import image_to_pixel_values

    bright = image_to_pixel_values(raw, 128, "CT")[0].numpy() > 0
    expected = np.zeros_like(bright)
    expected[20:101, 20:101] = bright[20:101, 20:101]
    assert np.array_equal(mask > 0, expected) and expected.any()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a supported image"):
        read_upload(str(tmp_path / "notes.txt"))
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="volume"):
        read_upload(str(tmp_path / "scan.nii.gz"))


def test_dicom_series_upload_propagates_through_the_volume(tmp_path):
    from msa_hf.data import volume_from_axial_slices
    from msa_hf.data.volumes import axial_slices, dicom_series_slices
    from msa_hf.inference.dicom_seg import labels_on_series_grid
    from msa_hf.testing import BrightInBoxSam, sphere_volume, write_dicom_series

    ball = sphere_volume(shape=(10, 32, 32), centre=(5, 15, 16), radius=4.0)
    write_dicom_series(tmp_path / "series", np.where(ball, 300, -1000).astype(np.int16))
    files = sorted(str(p) for p in (tmp_path / "series").iterdir())
    volume = VolumeSession(files, DemoSession(BrightInBoxSam(32)))
    assert volume.modality == "CT" and volume.slices.shape == (10, 32, 32)
    with pytest.raises(ValueError, match="nothing is segmented yet"):
        volume.save_dicom()
    expected = volume.slices > 0  # the ball, in the display orientation
    middle = int(np.argmax(expected.sum(axis=(1, 2))))
    rows, cols = np.nonzero(expected[middle])
    prompts = add_prompt(empty_prompts(), cols.min(), rows.min(), BOX, (32, 32))
    prompts = add_prompt(prompts, cols.max(), rows.max(), BOX, (32, 32))
    volume.set_prompts(middle, prompts)
    assert np.array_equal(volume.masks[middle], expected[middle])
    message = volume.propagate(middle)
    assert np.array_equal(volume.masks, expected), message
    assert message.startswith(f"propagated from slice {middle} to slices 1-9")
    with pytest.raises(ValueError, match="upload one volume file"):
        VolumeSession([str(tmp_path / "x.png")], DemoSession(BrightInBoxSam(32)))
    # the mask as a DICOM-SEG of the uploaded series: its frames are the mask on each referenced instance
    highdicom = pytest.importorskip("highdicom")
    seg = highdicom.seg.segread(volume.save_dicom())
    uids = [str(dataset.SOPInstanceUID) for _, dataset in dicom_series_slices(volume.source)[0]]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
    )[..., 0]  # fmt: skip
    expected = labels_on_series_grid(
        Path(volume.source), volume_from_axial_slices(volume.masks), volume.volume.affine
    )
    assert expected.any() and np.array_equal(frames.astype(bool), expected.astype(bool))
    import pydicom

    from msa_hf.data.rtstruct_labels import load_rtstruct_labels

    # with a report of its volume, which references the segmentation given beside it
    segmentation, report = volume.save_volume_report(name="Tumour")
    read = highdicom.sr.srread(report).content.get_volumetric_roi_measurement_groups()
    assert [str(group.tracking_identifier) for group in read] == ["Tumour"]
    assert (
        read[0].referenced_segment.referenced_sop_instance_uid == pydicom.dcmread(segmentation).SOPInstanceUID
    )
    voxel_ml = abs(np.linalg.det(volume.volume.affine[:3, :3])) / 1000
    assert read[0].get_measurements()[0].value == pytest.approx(volume.masks.sum() * voxel_ml, abs=1e-4)
    # and as an RT structure set, named as asked: its contours filled are the mask on every slice
    rtstruct = volume.save_dicom("rtstruct", name="Tumour")
    assert Path(rtstruct).name == "msa_mask_rtstruct.dcm"
    assert pydicom.dcmread(rtstruct).StructureSetROISequence[0].ROIName == "Tumour"
    assert pydicom.dcmread(volume.save_dicom()).SegmentSequence[0].SegmentLabel == "segmented structure"
    assert np.array_equal(
        axial_slices(load_rtstruct_labels(rtstruct, volume.source).array) == 1, volume.masks
    )
    # the files of two series uploaded together are never stacked into one: they are offered, then one opens
    write_dicom_series(
        tmp_path / "other", np.zeros((4, 32, 32), np.int16), series_number=8, description="late"
    )
    files += sorted(str(p) for p in (tmp_path / "other").iterdir())
    with pytest.raises(SeveralStacks) as refused:
        VolumeSession(files, DemoSession(BrightInBoxSam(32)))
    offered = {stack.key: stack.describe() for stack in refused.value.stacks}
    assert offered == {"3": "3: 10 axial CT slices", "8": '8: 4 axial CT slices, "late"'}
    assert str(tmp_path) not in str(refused.value) and "msa-series-" not in str(refused.value)
    chosen = VolumeSession(files, DemoSession(BrightInBoxSam(32)), series="3")
    assert np.array_equal(chosen.slices, volume.slices)


def test_the_page_encodes_on_the_device_and_in_the_dtype_it_is_given(tiny_base, tmp_path):
    """A session's pictures and volumes are encoded where and how it was told: bfloat16 on the CPU gives the
    float32 mask within bfloat16's tolerance, through the same code."""
    import nibabel as nib
    import torch

    from msa_hf.inference.loading import load_for_inference

    model, _ = load_for_inference(str(tiny_base))
    picture = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    masks = {}
    for dtype in ("float32", "bfloat16"):
        session = DemoSession(model, device="cpu", dtype=dtype)
        assert session.predictor.placement.dtype == getattr(torch, dtype)
        masks[dtype] = session.segment(picture, [], [8, 8, 30, 30]) > 0
    agree = (masks["float32"] == masks["bfloat16"]).mean()
    assert agree > 0.97 and masks["float32"].any(), agree
    session = DemoSession(model, device="cpu", dtype="bfloat16")
    data = np.random.default_rng(1).normal(100, 5, (16, 16, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "volume.nii.gz")
    volume = VolumeSession(str(tmp_path / "volume.nii.gz"), session)
    assert volume.predictor.decoder.placement == session.predictor.placement


def test_the_volume_api_propagates_and_keeps_no_temporary_copies(tmp_path, monkeypatch):
    """`/segment_volume` with `propagate`: the whole ball from a box on its middle slice, as the page gives it;
    the uploaded DICOM files' copy and the volume's own folder are removed, the answer kept for download."""
    import tempfile

    from msa_hf.data.volumes import axial_slices, load_volume
    from msa_hf.testing import sphere_volume, write_dicom_series

    ball = sphere_volume(shape=(10, 32, 32), centre=(5, 15, 16), radius=4.0)
    write_dicom_series(tmp_path / "series", np.where(ball, 300, -1000).astype(np.int16))
    files = sorted(str(p) for p in (tmp_path / "series").iterdir())
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    session = DemoSession(BrightInBoxSam(32))
    shown = VolumeSession(files, session)
    expected = shown.slices > 0  # the ball, as the page shows its slices
    shown.close()
    middle = int(np.argmax(expected.sum(axis=(1, 2))))
    rows, cols = np.nonzero(expected[middle])
    box = [float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())]
    path, done = session.segment_volume(files, middle, [], box, propagate=True)
    assert done.startswith(f"propagated from slice {middle} to slices 1-9"), done
    assert np.array_equal(axial_slices(load_volume(path, is_label=True).array) == 1, expected)
    assert [p.name.split("-")[1] for p in (tmp_path / "tmp").iterdir()] == ["downloads"]
    with pytest.raises(ValueError, match="slice: 10 is outside"):
        session.segment_volume(files, 10, [], box)


def test_a_volume_is_closed_when_the_visitors_session_ends(tmp_path):
    """The page's volume state closes its volume when Gradio drops the session: the slice embeddings go, and
    the copy of the uploaded DICOM files and the volume's own folder are removed."""
    from msa_hf.demo.sessions import EMBEDDING_CACHE_BYTES
    from msa_hf.testing import write_dicom_series

    write_dicom_series(tmp_path / "series", np.zeros((4, 24, 24), np.int16))
    session = DemoSession(BoxFillSam(32))
    uploaded = {p.name: p.read_bytes() for p in (tmp_path / "series").iterdir()}
    volume = VolumeSession(sorted(str(p) for p in (tmp_path / "series").iterdir()), session)
    assert volume.predictor.max_cached_bytes == EMBEDDING_CACHE_BYTES
    volume.prepare(1)
    assert volume.predictor._embeddings and Path(volume.copied).is_dir() and Path(volume.folder).is_dir()
    demo = app.build_demo(BoxFillSam(32))
    default = gradio.State(None).delete_callback
    (state,) = [
        block
        for block in demo.blocks.values()
        if isinstance(block, gradio.State) and block.delete_callback is not default
    ]
    state.delete_callback(volume)
    assert not volume.predictor._embeddings
    assert not Path(volume.copied).exists() and not Path(volume.folder).exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "series").iterdir()} == uploaded  # the visitor's own
    state.delete_callback(None)  # a session that never opened a volume


def test_only_the_volumes_used_last_keep_their_embeddings(tmp_path, monkeypatch):
    """Of all visitors' volumes, the `MAX_WARM_VOLUMES` used last keep their slice embeddings; an older one's
    are dropped, and it still answers (encoding again) when its visitor returns, the same mask."""
    import nibabel as nib

    from msa_hf.demo import sessions

    monkeypatch.setattr(sessions, "MAX_WARM_VOLUMES", 2)
    data = np.random.default_rng(0).normal(100, 5, (20, 12, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "scan.nii.gz")
    session = DemoSession(BoxFillSam(32))
    volumes = [VolumeSession(str(tmp_path / "scan.nii.gz"), session) for _ in range(3)]
    prompts = add_prompt(add_prompt(empty_prompts(), 2, 2, BOX, (12, 20)), 9, 8, BOX, (12, 20))
    first = volumes[0].set_prompts(2, prompts).copy()
    for volume in volumes[1:]:
        volume.prepare(2)
    assert [bool(v.predictor._embeddings) for v in volumes] == [False, True, True]
    assert np.array_equal(volumes[0].set_prompts(2, prompts), first)  # back: encoded again, the same
    assert [bool(v.predictor._embeddings) for v in volumes] == [True, False, True]


def test_kept_structures_stay_whole_in_every_download(tmp_path):
    """Keep one structure, segment another over it: the slices outline the kept one, the NIfTI label map holds
    both (the later over the earlier), and the DICOM-SEG and the RT structure set each whole, named."""
    import pydicom

    from msa_hf.data.dicom_seg_labels import load_dicom_structures
    from msa_hf.data.volumes import axial_slices, load_volume
    from msa_hf.evaluation.pictures import TARGET_COLOUR
    from msa_hf.testing import write_dicom_series

    pytest.importorskip("highdicom")
    write_dicom_series(tmp_path / "series", np.full((6, 32, 32), 40, np.int16))
    files = sorted(str(p) for p in (tmp_path / "series").iterdir())
    volume = VolumeSession(files, DemoSession(BoxFillSam(32)))
    assert volume.plane == "axial"

    def boxed(first, last):
        prompts = add_prompt(empty_prompts(), first, first, BOX, (32, 32))
        return add_prompt(prompts, last, last, BOX, (32, 32))

    with pytest.raises(ValueError, match="nothing is segmented yet"):
        volume.keep_structure("liver")
    volume.set_prompts(3, boxed(4, 20))
    liver = volume.masks.copy()
    assert volume.keep_structure("liver") == "kept 'liver'; segment the next structure (labels: 1 'liver')"
    assert not volume.masks.any() and volume.prompts_of(3) == empty_prompts()
    view = volume.show(3)
    assert (
        tuple(view[4, 12]) == TARGET_COLOUR and tuple(view[12, 12]) != TARGET_COLOUR
    )  # outlined, not filled
    volume.set_prompts(3, boxed(14, 26))
    tumour = volume.masks.copy()
    assert (liver & tumour).any() and (tumour & ~liver).any()

    labels = axial_slices(load_volume(volume.save(str(tmp_path)), is_label=True).array)
    assert np.array_equal(labels == 2, tumour) and np.array_equal(labels == 1, liver & ~tumour)
    for kind in ("seg", "rtstruct"):
        written = volume.save_dicom(kind, str(tmp_path), name="tumour")
        read, codes = load_dicom_structures(written, volume.source, {"liver": 1, "tumour": 2})
        assert codes is not None, kind  # they overlap, each whole
        for value, whole in ((1, liver), (2, tumour)):
            assert np.array_equal(axial_slices(np.isin(read.array, codes[value])), whole), (kind, value)
    assert [s.SegmentLabel for s in pydicom.dcmread(tmp_path / "msa_mask_seg.dcm").SegmentSequence] == [
        "liver",
        "tumour",
    ]
    import zipfile

    with zipfile.ZipFile(volume.save_structure_files(str(tmp_path / "zip"), name="tumour")) as archive:
        assert sorted(archive.namelist()) == ["liver.nii.gz", "tumour.nii.gz"]
        archive.extractall(tmp_path / "unzipped")
    assert sorted(p.name for p in (tmp_path / "zip").iterdir()) == [
        "msa_structures.zip"
    ]  # the staging is gone
    for stem, whole in (("liver", liver), ("tumour", tumour)):
        read = load_volume(tmp_path / "unzipped" / f"{stem}.nii.gz", is_label=True)
        assert np.array_equal(axial_slices(read.array) == 1, whole), stem
    # with nothing being segmented, the kept structures alone
    volume.keep_structure("")
    assert volume.structures()[1] == {1: "liver", 2: "structure 2"}
    rois = pydicom.dcmread(volume.save_dicom("rtstruct", str(tmp_path))).StructureSetROISequence
    assert [roi.ROIName for roi in rois] == ["liver", "structure 2"]


def test_an_nrrd_volumes_mask_download_names_and_codes_the_kept_structures(tmp_path):
    """An NRRD upload's mask download is a 3D Slicer segmentation whose segments bear the kept structures'
    names ("segmented structure" for the one being segmented), coded where a name denotes a concept."""
    slicerio = pytest.importorskip("slicerio")
    pytest.importorskip("SimpleITK")
    from msa_hf.testing import write_itk_copy, write_nifti_case

    write_nifti_case(tmp_path, "case", shape=(32, 32, 6))
    scan = write_itk_copy(tmp_path / "imagesTr" / "case_0000.nii.gz", tmp_path / "scan.nrrd")
    volume = VolumeSession(str(scan), DemoSession(BoxFillSam(32)))
    prompts = add_prompt(add_prompt(empty_prompts(), 4, 4, BOX, (32, 32)), 20, 20, BOX, (32, 32))
    volume.set_prompts(3, prompts)
    volume.keep_structure("left kidney")
    volume.set_prompts(
        3, add_prompt(add_prompt(empty_prompts(), 22, 22, BOX, (32, 32)), 28, 28, BOX, (32, 32))
    )
    saved = volume.save(str(tmp_path / "out"))
    assert saved.endswith(".nrrd")
    segments = slicerio.read_segmentation(saved, skip_voxels=True)["segments"]
    assert [(s["name"], s["labelValue"]) for s in segments] == [
        ("left kidney", 1),
        ("segmented structure", 2),
    ]
    kidney = segments[0]["terminology"]
    assert (kidney["type"][1], kidney["typeModifier"][1]) == ("64033007", "7771000")  # Kidney, Left
    assert "terminology" not in segments[1]


def test_choosing_a_task_adapter_segments_with_that_adapter(tmp_path):
    from peft import PeftModel

    from msa_hf.hub.task_adapters import load_task_adapters
    from msa_hf.inference.predictor import Prompt, SegmentationPredictor
    from msa_hf.testing import fresh_sam, saved_msa_adapter

    saved_msa_adapter(tmp_path / "liver", seed=1)
    saved_msa_adapter(tmp_path / "kidney", seed=2)
    model = load_task_adapters(
        fresh_sam(), {"liver": str(tmp_path / "liver"), "kidney": str(tmp_path / "kidney")}
    )
    session = DemoSession(model)
    assert session.adapters == ["liver", "kidney"]
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    masks = {}
    for name in ("kidney", "liver", "kidney"):
        masks[name] = session.segment(image, [[30, 30, 1], [10, 50, 0]], None, adapter=name)
        reference = SegmentationPredictor(PeftModel.from_pretrained(fresh_sam(), tmp_path / name))
        reference.set_image(image)
        expected, _ = reference.predict(Prompt(points=[[30, 30], [10, 50]], labels=[1, 0]))
        assert np.array_equal(masks[name] > 0, expected), name
    assert (masks["liver"] != masks["kidney"]).any()
    with pytest.raises(ValueError, match="unknown task adapter"):
        session.segment(image, [[30, 30, 1]], None, adapter="spleen")


class CountingBoxFillSam(BoxFillSam):
    """Counts the pictures it encodes."""

    def __init__(self, image_size: int) -> None:
        super().__init__(image_size)
        self.encoded = 0

    def get_image_embeddings(self, pixel_values):
        self.encoded += len(pixel_values)
        return pixel_values


def test_pictures_are_encoded_once_on_upload_and_kept_for_several_visitors():
    model = CountingBoxFillSam(32)
    session = DemoSession(model, cache_size=2)
    first, second, third = (np.full((20, 20), value, np.uint8) for value in (10, 20, 30))
    session.prepare(first)
    assert model.encoded == 1
    mask = session.segment(first, [[5, 5, 1]], None)
    assert model.encoded == 1 and mask[5, 5] == 255  # the first click only decodes
    session.segment(second, [[5, 5, 1]], None)
    session.segment(first, [[6, 6, 1]], None)
    assert model.encoded == 2  # two visitors alternating: nobody re-encodes
    session.segment(third, [[5, 5, 1]], None)  # evicts the least recently used (second)
    session.segment(first, [[5, 5, 1]], None)
    assert model.encoded == 3
    session.segment(second, [[5, 5, 1]], None)
    assert model.encoded == 4
    session.segment(first.astype(np.uint16), [[5, 5, 1]], None)  # same values, another dtype: another picture
    assert model.encoded == 5


def test_the_space_loads_a_base_with_task_adapters_from_its_settings(tmp_path, monkeypatch):
    import json

    from msa_hf.testing import fresh_sam, saved_msa_adapter

    saved_msa_adapter(tmp_path / "liver", seed=1)
    saved_msa_adapter(tmp_path / "kidney", seed=2)
    fresh_sam().save_pretrained(tmp_path / "base")
    monkeypatch.setenv("MSA_BASE", str(tmp_path / "base"))
    monkeypatch.setenv(
        "MSA_ADAPTERS", json.dumps({"liver": str(tmp_path / "liver"), "kidney": str(tmp_path / "kidney")})
    )
    model, _ = app.load_served()
    assert DemoSession(model).adapters == ["liver", "kidney"]


def test_msa_hf_demo_serves_the_model_and_adapters_it_is_given(tmp_path, monkeypatch, capsys):
    """`msa-hf demo`: the page around the model named on the command line (over MSA_MODEL), or a base with the
    task adapters named there (over MSA_ADAPTERS), launched with the command's options."""
    import json

    import torch

    from msa_hf.cli import main
    from msa_hf.testing import fresh_sam, saved_msa_adapter

    served = []

    class Page:  # build_demo's stand-in: records what it serves instead of serving until interrupted
        def __init__(
            self,
            model,
            window=None,
            slice_spacing=None,
            trained_planes=None,
            device=None,
            dtype=None,
            channel=None,
        ):
            served.append({"model": model, "slice_spacing": slice_spacing, "planes": trained_planes,
                           "placement": (device, dtype), "channel": channel})  # fmt: skip

        def launch(self, **options):
            served[-1]["options"] = options

    monkeypatch.setattr(app, "build_demo", Page)
    # serve tunes its own process (the demo's volume limit, unless one is set; malloc keeping freed memory):
    # not this one's
    monkeypatch.setenv("MSA_HF_MAX_VOXELS", "1000000")
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)  # serve's own default, restored after
    monkeypatch.setattr("msa_hf.inference.cpu_memory.keep_freed_memory", lambda: None)
    base = fresh_sam()
    base.save_pretrained(tmp_path / "base")
    saved_msa_adapter(tmp_path / "liver", seed=1)
    monkeypatch.setenv("MSA_MODEL", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MSA_ADAPTERS", json.dumps({"kidney": str(tmp_path / "nowhere")}))
    assert (
        main(["demo", str(tmp_path / "base"), "--adapter", f"liver={tmp_path / 'liver'}", "--port", "7999"])
        == 0
    )
    assert DemoSession(served[-1]["model"]).adapters == ["liver"]
    assert served[-1]["options"] == {"max_file_size": "500mb", "server_port": 7999, "share": False}
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"  # nothing sent to Gradio's servers unasked

    monkeypatch.delenv("MSA_ADAPTERS")
    assert main(["demo", str(tmp_path / "base"), "--host", "0.0.0.0", "--share"]) == 0
    model = served[-1]["model"]
    weight = "mask_decoder.iou_prediction_head.proj_out.weight"
    torch.testing.assert_close(model.state_dict()[weight], base.state_dict()[weight], rtol=0, atol=0)
    assert served[-1]["options"] == {"max_file_size": "500mb", "server_name": "0.0.0.0", "share": True}
    assert served[-1]["slice_spacing"] is None  # a 2-D model: nothing to resample

    # a depth-branch model's folder: served with the slice spacing its processor records
    from msa_hf.processing.processor import MsaProcessor

    MsaProcessor.for_model(base, slice_spacing=2.5, planes=("axial",), channel=(1, "T1w")).save_pretrained(
        tmp_path / "base"
    )
    assert main(["demo", str(tmp_path / "base")]) == 0
    assert served[-1]["slice_spacing"] == 2.5 and served[-1]["planes"] == ("axial",)
    assert (served[-1]["channel"].index, served[-1]["channel"].name) == (1, "T1w")  # of a 4-D upload

    assert main(["demo", "--adapter", "liver"]) != 0
    assert "NAME=REPO" in capsys.readouterr().err

    # where it runs: the command's --device/--dtype over a Space's MSA_DEVICE/MSA_DTYPE, else the defaults
    assert served[-1]["placement"] == (None, None)
    monkeypatch.setenv("MSA_DEVICE", "cpu")
    monkeypatch.setenv("MSA_DTYPE", "bfloat16")
    assert main(["demo", str(tmp_path / "base")]) == 0
    assert served[-1]["placement"] == ("cpu", "bfloat16")
    assert main(["demo", str(tmp_path / "base"), "--dtype", "float32"]) == 0
    assert served[-1]["placement"] == ("cpu", "float32")
    # on a CPU with bfloat16 hardware, a wide enough encoder served in float32 by default: the log says so
    from msa_hf.inference import placement

    monkeypatch.setattr(placement, "native_bfloat16_cpu", lambda: True)
    monkeypatch.setattr(placement, "BFLOAT16_PAYS_FROM_WIDTH", 1)
    monkeypatch.delenv("MSA_DTYPE")
    capsys.readouterr()
    assert main(["demo", str(tmp_path / "base")]) == 0
    assert "In a Space: MSA_DTYPE=bfloat16." in capsys.readouterr().err
    monkeypatch.setenv("MSA_DTYPE", "float16")  # not on a CPU: refused before the model loads
    pages = len(served)
    assert main(["demo", str(tmp_path / "base")]) != 0
    assert "float16 on the CPU" in capsys.readouterr().err and len(served) == pages


def test_a_text_trained_model_segments_by_description(tmp_path):
    from msa_hf.testing import text_model, tiny_text_encoder
    from msa_hf.training.text_training import text_prompted_mask

    encoder = tiny_text_encoder()
    encoder.save_pretrained(tmp_path / "clip")
    model = text_model()
    model.config.text_encoder_name = str(tmp_path / "clip")
    session = DemoSession(model)
    image = np.random.default_rng(0).integers(0, 255, (50, 60), dtype=np.uint8)
    mask = session.segment(image, [], None, text="grey matter")
    expected = text_prompted_mask(model, encoder, image, "grey matter")
    assert np.array_equal(mask > 0, expected)
    with pytest.raises(ValueError, match="add a click"):
        session.segment(image, [], None, text="  ")
    demo = app.build_demo(model)  # the text row is shown for this model
    assert any(getattr(block, "elem_id", None) == "text" for block in demo.blocks.values())


@pytest.mark.browser
@needs_chromium
def test_dicom_file_opens_and_takes_a_click_in_a_real_browser():
    from pydicom.data import get_testdata_file

    status = "[...document.querySelectorAll('#status textarea')].some(e => e.value.%s)"
    with demo_in_browser(BoxFillSam(64)) as page:
        page.locator("input[type=file]").nth(1).set_input_files(get_testdata_file("CT_small.dcm"))
        page.wait_for_function(status % "includes('CT_small.dcm (CT)')", timeout=30_000)
        box = _visible_box(page, "#prompt-image img")
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(status % "endsWith('click(s)')", timeout=30_000)
        page.screenshot(path=str(ARTEFACTS / "demo-dicom.png"), full_page=True)


def _ball_volume(tmp_path):
    """A NIfTI of 16 axial slices holding a bright ball on slices 2-14 (a BoxFillSam fills the box it is given)."""
    import nibabel as nib

    from msa_hf.testing import sphere_volume

    ball = sphere_volume(shape=(16, 32, 32), centre=(8, 15, 17), radius=6.0)
    data = np.where(ball, 200.0, 10.0).astype(np.float32).transpose(2, 1, 0)  # (x, y, z) for NIfTI
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "ball.nii.gz")
    return str(tmp_path / "ball.nii.gz")


class _ScoredBrightInBox(BrightInBoxSam):
    """The bright pixels inside the box, with an IoU score of 0.9 (to test the propagation threshold)."""

    def forward(self, *args, **kwargs):
        outputs = super().forward(*args, **kwargs)
        outputs.iou_scores = outputs.iou_scores * 0.9
        return outputs


def test_undo_on_a_propagated_slice_keeps_what_propagation_filled(tmp_path):
    volume = VolumeSession(_ball_volume(tmp_path), DemoSession(_ScoredBrightInBox(32)))
    seed = volume.slices.shape[0] // 2
    box = add_prompt(empty_prompts(), 12, 10, BOX, volume.slices.shape[1:])
    volume.set_prompts(seed, add_prompt(box, 22, 20, BOX, volume.slices.shape[1:]))
    volume.propagate(seed)
    filled = volume.masks.copy()
    other = seed + 2
    assert filled[other].any()
    # a prompt on a propagated slice, then its undo: the slice shows the propagated mask again, not nothing
    corner = add_prompt(empty_prompts(), 14, 12, BOX, volume.slices.shape[1:])
    clicked = add_prompt(corner, 16, 14, BOX, volume.slices.shape[1:])
    volume.set_prompts(other, clicked)
    assert not np.array_equal(volume.masks[other], filled[other])
    volume.set_prompts(other, undo_prompt(clicked))
    assert np.array_equal(volume.masks[other], filled[other])
    # undo on the seed removes the visitor's own segmentation there
    volume.set_prompts(seed, empty_prompts())
    assert not volume.masks[seed].any()


def test_propagation_says_why_it_stopped_and_keeps_to_the_slice_range(tmp_path):
    volume = VolumeSession(_ball_volume(tmp_path), DemoSession(_ScoredBrightInBox(32)))
    seed = 8
    box = add_prompt(empty_prompts(), 12, 10, BOX, volume.slices.shape[1:])
    volume.set_prompts(seed, add_prompt(box, 22, 20, BOX, volume.slices.shape[1:]))
    # through the whole volume, it stops where the ball ends, in each direction, and says so
    message = volume.propagate(seed)
    ball = np.flatnonzero(volume.slices.reshape(len(volume.slices), -1).max(axis=1) > 100)
    assert f"to slices {ball[0]}-{ball[-1]}" in message, message
    assert (
        f"up: an empty mask at slice {ball[-1] + 1}" in message
        and f"down: an empty mask at slice {ball[0] - 1}" in message
    )
    # within a slice range: nothing outside it, and the range is the reason
    message = volume.propagate(seed, slice_range=(6, 10))  # replaces the first propagation
    assert "to slices 6-10" in message and "up: the end of the slice range at 10" in message
    assert (
        not volume.masks[:6].any()
        and not volume.masks[11:].any()
        and volume.masks[6:11].any(axis=(1, 2)).all()
    )
    # a threshold above the IoU head's 0.9 stops at the first neighbour, and says so
    message = volume.propagate(seed, stop_score=0.95)
    assert f"slice {seed + 1} scored 0.90, under the threshold 0.95" in message, message
    with pytest.raises(ValueError, match="slice_range"):
        volume.propagate(seed, slice_range=(9, 12))


def test_a_correction_on_another_slice_becomes_a_seed_of_the_next_propagation(tmp_path):
    volume = VolumeSession(_ball_volume(tmp_path), DemoSession(_ScoredBrightInBox(32)))
    seed, other = 8, 11
    shape = volume.slices.shape[1:]
    box = add_prompt(empty_prompts(), 12, 10, BOX, shape)
    volume.set_prompts(seed, add_prompt(box, 22, 20, BOX, shape))
    volume.propagate(seed)
    above = volume.masks[other + 1].copy()
    # the visitor corrects slice 11 with a smaller box: that slice keeps it, and propagating again starts from
    # both slices, so the slices above 11 follow the correction
    corner = add_prompt(empty_prompts(), 12, 10, BOX, shape)
    volume.set_prompts(other, add_prompt(corner, 16, 20, BOX, shape))
    corrected = volume.masks[other].copy()
    message = volume.propagate(seed)
    assert f"propagated from slices {seed}, {other}" in message and f"up from {other}" in message, message
    assert np.array_equal(volume.masks[other], corrected)
    # slice 12 now comes from the correction (columns up to 16, its box grown by 2): not the ball's full width
    assert above[:, 19:].any() and volume.masks[other + 1].any() and not volume.masks[other + 1][:, 19:].any()


def test_the_api_is_one_documented_endpoint_with_named_arguments(tmp_path):
    from gradio_client import Client, handle_file

    demo = app.build_demo(BoxFillSam(64))
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)
        assert set(api["named_endpoints"]) == {"/segment", "/segment_volume"} and not api["unnamed_endpoints"]
        endpoint = api["named_endpoints"]["/segment"]
        assert [p["parameter_name"] for p in endpoint["parameters"]] == ["image", "points", "box", "adapter"]
        assert [r["label"] for r in endpoint["returns"]] == ["mask"]
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "slice.png")
        picture = handle_file(str(tmp_path / "slice.png"))
        with pytest.raises(Exception, match=r"points: got \[\[40, 24\]\]; expected"):
            client.predict(picture, json.dumps([[40, 24]]), "", "", api_name="/segment")
        with pytest.raises(Exception, match="box: not JSON"):
            client.predict(picture, "", "[1, 2", "", api_name="/segment")
        with pytest.raises(Exception, match="unknown task adapter 'liver'"):
            client.predict(picture, json.dumps([[40, 24, 1]]), "", "liver", api_name="/segment")
        # a volume: a NIfTI file, a slice and a box -> the mask on the input's grid, as predict writes it
        volume = api["named_endpoints"]["/segment_volume"]
        assert [p["parameter_name"] for p in volume["parameters"]] == [
            "volume", "slice", "points", "box", "propagate", "adapter", "channel",
        ]  # fmt: skip
        assert [r["label"] for r in volume["returns"]] == ["mask", "status"]
        import nibabel as nib

        from msa_hf.data import load_nifti
        from msa_hf.testing import SCRAMBLED_AFFINE

        data = np.random.default_rng(0).normal(100, 5, (20, 12, 16)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
        scan = handle_file(str(tmp_path / "scan.nii.gz"))
        mask, status = client.predict(
            [scan], 5, "", json.dumps([3, 4, 9, 12]), False, "", api_name="/segment_volume"
        )
        assert status.startswith("slice 5: box")
        predict_file(BoxFillSam(64), tmp_path / "scan.nii.gz", tmp_path / "expected.nii.gz",
                     [Prompt(box=[3, 4, 9, 12], slice=5)])  # fmt: skip
        expected = load_nifti(tmp_path / "expected.nii.gz", is_label=True).array
        assert expected.any() and np.array_equal(load_nifti(mask, is_label=True).array, expected)
        with pytest.raises(Exception, match=r"slice: 12 is outside the volume's 12 axial slices \(0 to 11\)"):
            client.predict([scan], 12, "", json.dumps([3, 4, 9, 12]), False, "", api_name="/segment_volume")
        with pytest.raises(Exception, match="points and box: neither was sent"):
            client.predict([scan], 5, "", "", False, "", api_name="/segment_volume")
        # a scan of several channels: the one named, as predict reads it; none named is refused with them listed
        channels = np.stack([data, -data, 2 * data], axis=-1)
        nib.save(nib.Nifti1Image(channels, SCRAMBLED_AFFINE), tmp_path / "channels.nii.gz")
        several = handle_file(str(tmp_path / "channels.nii.gz"))
        with pytest.raises(Exception, match=r"3 channels \(0, 1, 2\)"):
            client.predict([several], 5, "", json.dumps([3, 4, 9, 12]), False, "", api_name="/segment_volume")
        mask, _ = client.predict(
            [several], 5, "", json.dumps([3, 4, 9, 12]), False, "", "2", api_name="/segment_volume"
        )
        assert np.array_equal(load_nifti(mask, is_label=True).array, expected)
    finally:
        demo.close()


def test_sixteen_bit_pictures_are_shown_and_segmented_by_their_own_range(tmp_path):
    scan = np.full((40, 50), 1000, np.uint16)
    scan[10:30, 12:40] = 3000  # a 16-bit scan using a sliver of 0-65535
    Image.fromarray(scan).save(tmp_path / "scan.png")
    shown, raw, modality = read_upload(str(tmp_path / "scan.png"))
    assert shown.dtype == np.uint8 and shown.min() == 0 and shown.max() == 255  # not a black picture
    from msa_hf.inference.image_encoding import image_to_pixel_values

    # the model sees what the visitor sees: the same picture stored in 8 bits gives the same input
    eight_bit = np.where(scan == 3000, 255, 0).astype(np.uint8)
    torch = pytest.importorskip("torch")
    torch.testing.assert_close(image_to_pixel_values(raw, 64), image_to_pixel_values(eight_bit, 64))


def test_errors_name_the_visitors_file_never_the_servers_folder(tmp_path):
    upload = tmp_path / "gradio" / "0123abcd" / "broken.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError) as raised:
        read_upload(str(upload))
    assert "broken.png" in str(raised.value) and str(tmp_path) not in str(raised.value)
    volume = tmp_path / "gradio" / "4567" / "scan.nii.gz"
    volume.parent.mkdir(parents=True)
    volume.write_bytes(b"\x1f\x8b broken gzip")
    with pytest.raises(ValueError) as raised:
        VolumeSession([str(volume)], DemoSession(BoxFillSam(32)))
    assert "scan.nii.gz" in str(raised.value) and str(tmp_path) not in str(raised.value)


def _upload_and_click(page, folder: Path, clicked: str) -> None:
    """Upload a bright-rectangle slice to the 2-D tab and click its middle until the JavaScript condition
    `clicked` holds (a click that lands while the upload resets the prompts is undone: retried)."""
    image = np.full((96, 128, 3), 40, np.uint8)
    image[30:60, 40:90] = 200
    Image.fromarray(image).save(folder / "slice.png")
    page.locator("#prompt-image input[type=file]").set_input_files(str(folder / "slice.png"))
    box = _visible_box(page, "#prompt-image img")
    for _ in range(5):
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.45)
        page.wait_for_timeout(1500)
        if page.evaluate(clicked):
            break
    page.wait_for_function(clicked, timeout=30_000)


@pytest.mark.browser
@needs_chromium
def test_a_new_picture_resets_the_prompts_and_overlay(tmp_path):
    """Picking an example after prompting another picture starts afresh (the next click used the old box)."""
    status = "[...document.querySelectorAll('#status textarea')].some(e => e.value === %r)"
    with demo_in_browser(BoxFillSam(64)) as page:
        _upload_and_click(page, tmp_path, status.replace("e.value === %r", "e.value.endsWith('click(s)')"))
        page.locator(".gallery-item, button.gallery-item, [data-testid='examples'] button").first.click()
        page.wait_for_function(status % "no prompts", timeout=30_000)


def test_the_page_shows_any_of_sams_three_masks_with_scores_and_probabilities(tmp_path):
    import torch

    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.demo.sessions import KEPT_DOWNLOADS, mask_choice
    from msa_hf.inference.predictor import Prompt, SegmentationPredictor
    from msa_hf.testing import randomize_weights, tiny_sam_kwargs

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0, std=0.1)
    session = DemoSession(model)
    image = np.random.default_rng(4).integers(0, 255, (40, 50), dtype=np.uint8)
    reference = SegmentationPredictor(model)
    reference.set_image(image)
    three = reference.predict_masks(Prompt(points=[[20, 12]]), multimask=True)
    assert not np.array_equal(three.logits[0] > 0, three.logits[2] > 0)  # three different masks
    for choice in range(3):
        found = session.segment_masks(image, [[20, 12, 1]], None, choice=choice)
        assert np.array_equal(found.mask > 0, three.logits[choice] > 0) and found.chosen == choice
        np.testing.assert_allclose(
            found.probabilities, torch.sigmoid(torch.from_numpy(three.logits[choice])), atol=1e-6
        )
        np.testing.assert_allclose(found.scores, three.scores, atol=1e-6)
        assert found.describe().startswith(f"mask {choice + 1} of 3 shown")
    best = session.segment_masks(image, [[20, 12, 1]], None)  # SAM's rule: the best by predicted IoU
    assert best.chosen == three.best and np.array_equal(
        best.mask, session.segment(image, [[20, 12, 1]], None)
    )
    boxed = session.segment_masks(
        image, [], [5, 5, 30, 25]
    )  # a box: one mask, unless one of three is asked for
    assert len(boxed.scores) == 1 and "one mask" in boxed.describe()
    assert len(session.segment_masks(image, [], [5, 5, 30, 25], choice=1).scores) == 3
    # the probability download: a float32 TIFF of the shown mask's map; only the last few are kept
    path = session.probability_file(best.probabilities)
    with Image.open(path) as written:
        np.testing.assert_array_equal(np.asarray(written), best.probabilities)
    paths = [session.probability_file(best.probabilities) for _ in range(KEPT_DOWNLOADS)]
    assert not Path(path).exists() and all(Path(p).exists() for p in paths)
    assert [mask_choice(v) for v in ("best", "1", "3")] == [None, 0, 2]
    with pytest.raises(ValueError, match="mask choice"):
        mask_choice("4")
    with pytest.raises(ValueError, match="mask choice"):
        session.segment_masks(image, [[20, 12, 1]], None, choice=3)


@pytest.mark.browser
@needs_chromium
def test_choosing_one_of_three_masks_in_a_real_browser(tmp_path):
    scores = "[...document.querySelectorAll('#mask-scores textarea')].some(e => e.value.startsWith(%r))"
    with demo_in_browser(BoxFillSam(64)) as page:
        _upload_and_click(page, tmp_path, scores % "mask 1 of 3")  # best: the stand-in's scores tie
        page.locator("#mask-choice label", has_text="2").click()
        page.wait_for_function(scores % "mask 2 of 3", timeout=30_000)
        assert page.locator("#probabilities a").count() >= 1  # the probability map to download


def test_the_volume_tab_shows_any_of_sams_three_masks_on_a_slice(tmp_path):
    from msa_hf import SamAdapterConfig, SamAdapterModel
    from msa_hf.inference.predictor import Prompt
    from msa_hf.inference.volume_predictor import VolumePredictor
    from msa_hf.testing import randomize_weights, tiny_sam_kwargs

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs())).eval()
    randomize_weights(model, seed=0, std=0.1)
    volume = VolumeSession(_ball_volume(tmp_path), DemoSession(model))
    reference = VolumePredictor(model)
    reference.set_volume(volume.slices, volume.modality)
    index = 8
    three = reference.predict_masks(index, Prompt(points=[[17, 15]]), multimask=True)
    assert not np.array_equal(three.logits[0] > 0, three.logits[2] > 0)  # three different masks
    clicked = add_prompt(empty_prompts(), 17, 15, POSITIVE, volume.slices.shape[1:])
    for choice in range(3):
        volume.set_prompts(index, clicked, choice=choice)
        assert np.array_equal(volume.masks[index], three.logits[choice] > 0)
        assert f"mask {choice + 1} of 3 shown" in volume.describe(index)
    from msa_hf.data import axial_slices, load_nifti

    # the download holds the mask shown
    written = axial_slices(load_nifti(volume.save(str(tmp_path)), is_label=True).array)
    assert np.array_equal(written[index] > 0, three.logits[2] > 0)
    volume.set_prompts(index, clicked)  # SAM's rule: the best by predicted IoU
    assert np.array_equal(volume.masks[index], three.logits[three.best] > 0)
    assert volume.describe(index).startswith("slice 8: 1 click(s); mask ")
    volume.set_prompts(index, undo_prompt(clicked))
    assert volume.describe(index) == "slice 8: no prompts" and not volume.masks[index].any()
    with pytest.raises(ValueError, match="mask choice"):
        volume.set_prompts(index, clicked, choice=3)


def test_a_nifti_volume_has_no_dicom_seg(tmp_path):
    import nibabel as nib

    from msa_hf.testing import BrightInBoxSam

    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    volume = VolumeSession(str(tmp_path / "scan.nii.gz"), DemoSession(BrightInBoxSam(16)))
    with pytest.raises(ValueError, match="opened from a volume file"):
        volume.save_dicom()


def test_an_enhanced_multi_frame_file_opens_as_its_series(tmp_path):
    highdicom = pytest.importorskip("highdicom")
    from msa_hf.data.volumes import dicom_series_slices
    from msa_hf.testing import BrightInBoxSam, write_dicom_series

    volume = np.random.default_rng(0).integers(-1000, 1000, (5, 16, 16)).astype(np.float32)
    write_dicom_series(tmp_path / "series", volume)
    found, _ = dicom_series_slices(tmp_path / "series")
    highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[dataset for _, dataset in found], series_instance_uid=highdicom.UID(), series_number=3,
        sop_instance_uid=highdicom.UID(), instance_number=1,
    ).save_as(tmp_path / "CT.dcm")  # fmt: skip
    classic = VolumeSession(
        sorted(str(p) for p in (tmp_path / "series").iterdir()), DemoSession(BrightInBoxSam(32))
    )
    enhanced = VolumeSession([str(tmp_path / "CT.dcm")], DemoSession(BrightInBoxSam(32)))
    assert enhanced.modality == "CT" and np.array_equal(enhanced.slices, classic.slices)


def test_an_enhanced_file_of_two_acquisitions_offers_each_and_opens_the_chosen_one(tmp_path):
    pytest.importorskip("highdicom")
    from msa_hf.data.dicom_seg_labels import load_seg_labels
    from msa_hf.data.volumes import axial_slices, load_volume
    from msa_hf.testing import write_enhanced_acquisitions

    rng = np.random.default_rng(3)
    volumes = [rng.integers(-1000, 1000, (5, 16, 16)).astype(np.float32) for _ in range(2)]
    path = write_enhanced_acquisitions(tmp_path, volumes)
    with pytest.raises(SeveralStacks) as refused:
        VolumeSession([str(path)], DemoSession(BrightInBoxSam(32)))
    offered = [stack.key for stack in refused.value.stacks]
    assert offered == ["4/FrameAcquisitionNumber=1", "4/FrameAcquisitionNumber=2"]
    assert str(tmp_path) not in str(refused.value)
    chosen = VolumeSession([str(path)], DemoSession(BrightInBoxSam(32)), series=offered[1])
    classic = axial_slices(load_volume(tmp_path / "dual", series="3/AcquisitionNumber=2").array)
    assert np.array_equal(chosen.slices, classic)
    prompts = add_prompt(empty_prompts(), 2, 2, BOX, chosen.slices.shape[1:])
    chosen.set_prompts(2, add_prompt(prompts, 12, 12, BOX, chosen.slices.shape[1:]))
    assert chosen.masks.any()
    # its DICOM-SEG is the mask on that volume's frames (references checked in test_dicom_stacks)
    read = load_seg_labels(chosen.save_dicom(), chosen.source, series=offered[1])
    assert np.array_equal(axial_slices(read.array).astype(bool), chosen.masks)


def test_a_zip_of_a_pacs_export_opens_as_its_series(tmp_path, monkeypatch):
    """A zip as a PACS exports a series (files without a suffix, in folders, beside a README and macOS's
    copies) opens as the same volume as its files uploaded one by one, its DICOM files alone copied; a zip
    that is not one, holds no DICOM file or unpacks beyond the limit is refused, saying so."""
    import zipfile

    import msa_hf.demo.uploads as uploads
    from msa_hf.testing import write_dicom_series

    volume = np.random.default_rng(0).integers(-200, 200, (5, 24, 20)).astype(np.int16)
    write_dicom_series(tmp_path / "series", volume)
    files = sorted((tmp_path / "series").iterdir())
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, file in enumerate(files):
            archive.write(file, f"PAT1/STUDY1/SER3/IM{index:04d}")
            archive.writestr(f"__MACOSX/PAT1/STUDY1/SER3/._IM{index:04d}", b"resource fork")
        archive.writestr("README.TXT", "exported by a PACS")
    session = DemoSession(BoxFillSam(32))
    from_zip = VolumeSession([str(export)], session)
    from_files = VolumeSession([str(f) for f in files], session)
    assert np.array_equal(from_zip.volume.array, from_files.volume.array)
    assert np.allclose(from_zip.volume.affine, from_files.volume.affine)
    assert len(list(Path(from_zip.source).iterdir())) == len(files)  # the DICOM files alone
    from_zip.close()
    assert not Path(from_zip.source).exists()

    (tmp_path / "broken.zip").write_bytes(os.urandom(400))
    with pytest.raises(ValueError, match="broken.zip: not a readable zip archive"):
        VolumeSession([str(tmp_path / "broken.zip")], session)
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes.txt", "no images here")
    with pytest.raises(ValueError, match="no DICOM file in the zip"):
        VolumeSession([str(tmp_path / "notes.zip")], session)
    monkeypatch.setattr(uploads, "MAX_ZIP_BYTES", 2_000)  # below the series' size
    with pytest.raises(ValueError, match="export.zip: .* the demo takes up to"):
        VolumeSession([str(export)], session)
