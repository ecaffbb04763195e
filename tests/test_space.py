"""The Gradio demo: the segmentation function on known models, and its API endpoint through gradio_client."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_evaluation import BoxFillSam

gradio = pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")

APP = Path(__file__).resolve().parents[1] / "spaces" / "msa-demo" / "app.py"


def _app():
    spec = importlib.util.spec_from_file_location("msa_demo_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segment_follows_the_prompts():
    session = _app().DemoSession(BoxFillSam(64))
    image = np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8)
    picture, mask = session.segment(image, [], [10, 8, 30, 20])
    rows, cols = np.nonzero(mask)
    assert picture.shape == (48, 64, 3) and set(np.unique(mask)) == {0, 255}
    assert (cols.min(), rows.min(), cols.max(), rows.max()) == (10, 8, 30, 20)
    _, first = session.segment(image, [[20, 20, 1]], None)
    _, second = session.segment(
        image, [[20, 20, 1], [50, 30, 1]], None
    )  # the stand-in follows the last click
    assert first[20, 20] == 255 and second[30, 50] == 255 and second[20, 20] == 0
    with pytest.raises(ValueError, match="add a click"):
        session.segment(image, [], None)
    with pytest.raises(ValueError, match="outside"):
        session.segment(image, [[64, 5, 1]], None)


def test_segment_endpoint_through_gradio_client(tmp_path):
    from gradio_client import Client, handle_file

    demo = _app().build_demo(BoxFillSam(64))
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        image = np.zeros((48, 64, 3), np.uint8)
        Image.fromarray(image).save(tmp_path / "slice.png")
        client = Client(demo.local_url, verbose=False)
        result = client.predict(
            handle_file(str(tmp_path / "slice.png")), json.dumps([[40, 24, 1]]), "", api_name="/segment"
        )
        mask = np.asarray(Image.open(result))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        assert mask[24, 40] == 255 and mask[5, 5] == 0
        with pytest.raises(Exception, match="add a click"):
            client.predict(handle_file(str(tmp_path / "slice.png")), "", "", api_name="/segment")
    finally:
        demo.close()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run does)"
)
def test_click_in_a_real_browser_shows_the_overlay(tmp_path):
    """Upload a slice, click it, see the overlay appear; the screenshot is kept as a test artefact."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    demo = _app().build_demo(BoxFillSam(64))
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    image = np.full((96, 128, 3), 40, np.uint8)
    image[30:60, 40:90] = 200
    Image.fromarray(image).save(tmp_path / "slice.png")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(demo.local_url)
            page.locator("#prompt-image input[type=file]").set_input_files(str(tmp_path / "slice.png"))
            uploaded = page.locator("#prompt-image img").first
            uploaded.wait_for(state="visible", timeout=30_000)
            box = uploaded.bounding_box()

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
            artefacts = Path(__file__).resolve().parents[1] / "build" / "test-artefacts"
            artefacts.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(artefacts / "demo-click.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    assert (artefacts / "demo-click.png").stat().st_size > 10_000


def test_volume_session_segments_slices_and_saves_on_the_input_grid(tmp_path):
    import nibabel as nib
    from test_data_volumes import SCRAMBLED_AFFINE

    from msa_hf.data import axial_slices, load_nifti

    app = _app()
    data = np.random.default_rng(0).normal(100, 5, (20, 12, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, SCRAMBLED_AFFINE), tmp_path / "scan.nii.gz")
    volume = app.VolumeSession(str(tmp_path / "scan.nii.gz"))
    assert volume.slices.shape == (12, 20, 16) and volume.modality == "MR"
    view = volume.segment(app.DemoSession(BoxFillSam(32)), 5, [[8, 10, 1]])
    assert view.shape == (20, 16, 3)
    saved = nib.load(volume.save(str(tmp_path)))
    assert np.allclose(saved.affine, SCRAMBLED_AFFINE) and saved.shape == data.shape
    back = axial_slices(load_nifti(volume.save(str(tmp_path)), is_label=True).array)
    assert back[5][10, 8] == 1 and back.sum() == volume.masks.sum() and not back[4].any()
