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
