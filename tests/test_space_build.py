"""A pushed demo Space builds from what we push: the exact file set `push_space` uploads is installed into a
fresh virtual environment (msa_hf from the wheel inside the set, its requirements resolved by pip), the app
starts from it, and its `segment` API answers as the app does here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msa_hf.hub.push import space_files

pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_pushed_space_installs_starts_and_segments(tmp_path):
    import torch
    from gradio_client import Client, handle_file

    space = tmp_path / "space"
    files = space_files("org/msa-demo-model")
    for path, content in files.items():
        target = space / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    requirements = (space / "requirements.txt").read_text().split()
    assert requirements == [
        f"./wheels/{next(p for p in files if p.startswith('wheels/'))[7:]}[demo,medical,dicom]"
    ]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # The Space's pip installs from PyPI; here the new venv sees the distributions this checkout's own
    # environment installed from the same requirements (torch's CPU build among them) through a path file,
    # rather than unpacking them again (about a minute of CPU). pip counts them installed, checks the
    # wheel's requirements against them and fetches whatever they lack; msa_hf itself, and the installers'
    # own packages, are left out, so msa_hf comes from the pushed wheel alone.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    installed, shared = Path(torch.__file__).parent.parent, tmp_path / "project-environment"
    shared.mkdir()
    left_out = ("msa_hf", "__editable__", "pip", "setuptools", "wheel", "_distutils_hack", "__pycache__")
    for entry in installed.iterdir():
        if entry.suffix != ".pth" and not entry.name.lower().startswith(left_out):
            (shared / entry.name).symlink_to(entry)
    (Path(site) / "project-environment.pth").write_text(f"{shared}\n")
    result = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-compile", "-r", "requirements.txt"],
        cwd=space,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import msa_hf, gradio; print(msa_hf.__file__); print(gradio.__file__)"],
        capture_output=True, text=True, check=True, cwd=space, env={**os.environ, "PYTHONPATH": ""},
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(site) and where[1].startswith(str(shared)), where  # msa_hf is the wheel's

    port = _free_port()
    env = {
        **os.environ, "MSA_MODEL": "tiny", "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
        "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": "",
    }  # fmt: skip
    app = subprocess.Popen(
        [python, "app.py"], cwd=space, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert app.poll() is None, app.stdout.read().decode()[-3000:]
                time.sleep(0.5)
        image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / "slice.png")
        result = Client(url, verbose=False).predict(
            handle_file(str(tmp_path / "slice.png")), json.dumps([[40, 24, 1]]), "", "", api_name="/segment"
        )
        served = np.asarray(Image.open(result))
        served = served[..., 0] if served.ndim == 3 else served
    finally:
        app.terminate()
        app.wait(timeout=30)
    # the same request to the page in this process, on the same model: the same mask
    from msa_hf.demo.app import DemoSession
    from msa_hf.inference.loading import load_for_inference

    model, processor = load_for_inference("tiny")
    expected = DemoSession(model, window=processor.window).segment(image, [[40, 24, 1]], None)
    assert set(np.unique(served)) <= {0, 255} and served.any()
    np.testing.assert_array_equal(served, expected)
