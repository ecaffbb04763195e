"""msa-hf push against an in-memory Hub on 127.0.0.1: real huggingface_hub client code, no real publish."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import huggingface_hub
import pytest
import torch
from fake_hub import FakeHub
from transformers import SamModel

from msa_hf import SamAdapterModel
from msa_hf.hub.push import push_run
from msa_hf.training.job import run_training


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # huggingface_hub reads these at import time
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        huggingface_hub.constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", server.endpoint)  # the module-level client
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trained_run(tiny_base, disk_dataset, tmp_path_factory):
    from msa_hf.training.config import TrainConfig
    from msa_hf.training.test_report import test_comparison

    output = tmp_path_factory.mktemp("run")
    config = TrainConfig(base=str(tiny_base), dataset=str(disk_dataset), output_dir=str(output), steps=2,
                         batch_size=4, eval_every=2, log_with="none")  # fmt: skip
    run_training(config)
    test_comparison(config, output)  # as train.py does: the card gets its test scores
    return output


def test_dry_run_lists_both_repos_and_uploads_nothing(trained_run, hub):
    plan = push_run(trained_run, "org/msa-disks", dry_run=True)
    assert set(plan.uploads) == {"org/msa-disks", "org/msa-disks-adapter"}
    paths = [p for p, _ in plan.uploads["org/msa-disks"]]
    assert (
        "model.safetensors" in paths
        and "processor_config.json" in paths
        and not any("adapter/" in p for p in paths)
    )
    assert "adapter_model.safetensors" in [p for p, _ in plan.uploads["org/msa-disks-adapter"]]
    assert "org/msa-disks: " in plan.describe() and hub.repos == {}
    for files in plan.uploads.values():  # peft's own adapter README is replaced by ours, not listed beside it
        paths = [path for path, _ in files]
        assert len(paths) == len(set(paths)) and all(size > 0 for _, size in files)


def test_pushed_model_and_adapter_reload_with_identical_outputs(trained_run, tiny_base, hub):
    push_run(trained_run, "org/msa-disks", private=True, dataset_repo_id="org/disks")
    assert hub.repos[("model", "org/msa-disks")]["private"]
    local = SamAdapterModel.from_pretrained(trained_run / "model").eval()
    remote = SamAdapterModel.from_pretrained("org/msa-disks").eval()
    from peft import PeftModel

    import msa_hf  # noqa: F401  (registers the msa peft method)

    adapter = PeftModel.from_pretrained(SamModel.from_pretrained(tiny_base), "org/msa-disks-adapter").eval()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    points, labels = torch.tensor([[[[20.0, 30.0]]], [[[40.0, 12.0]]]]), torch.ones(2, 1, 1, dtype=torch.long)
    with torch.no_grad():
        expected = local(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
        from_full = remote(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
        from_adapter = adapter(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
    assert torch.equal(expected, from_full)
    assert torch.allclose(expected, from_adapter, atol=1e-5)
    card = hub.repos[("model", "org/msa-disks-adapter")]["files"]["README.md"].decode()
    assert "library_name: peft" in card and "org/msa-disks" in card
    from huggingface_hub import ModelCard

    model_card = ModelCard(hub.repos[("model", "org/msa-disks")]["files"]["README.md"].decode())
    local_card = ModelCard((trained_run / "model" / "README.md").read_text())
    assert model_card.data.datasets == ["org/disks"]  # the published dataset, not the local folder's name
    assert {r.dataset_type for r in model_card.data.eval_results} == {"org/disks"}
    # one result per protocol and metric, from huggingface_hub's card data classes, on the named test split
    results = {(r.metric_type, r.metric_config) for r in model_card.data.eval_results}
    assert {
        (m, p) for m in ("dice", "iou", "hd95", "nsd") for p in ("box", "points1", "iterative")
    } <= results
    assert {r.dataset_split for r in model_card.data.eval_results} == {"test"}
    assert model_card.data.eval_results[0].metric_value == local_card.data.eval_results[0].metric_value
    assert model_card.text == local_card.text


def test_push_to_a_branch_and_refuse_an_unfinished_run(trained_run, hub, tmp_path):
    push_run(trained_run, "org/msa-branch", revision="experiment")
    assert {c["revision"] for c in hub.commits} == {"experiment"}
    assert "experiment" in hub.repos[("model", "org/msa-branch")]["branches"]
    with pytest.raises(FileNotFoundError, match="finished train.py run"):
        push_run(tmp_path, "org/nothing")


def test_cli_push_dry_run(trained_run, disk_dataset, capsys):
    from msa_hf.cli import main

    assert main(["push", str(trained_run), "org/msa-disks", "--dry-run", "--revision", "v1"]) == 0
    printed = capsys.readouterr().out
    assert (
        printed.startswith("would upload:")
        and "org/msa-disks@v1" in printed
        and "org/msa-disks-adapter@v1" in printed
    )
    # --dataset alone goes to <org>/<folder name> and is listed file by file
    assert main(["push", str(trained_run), "org/msa-disks", "--dry-run", "--dataset", str(disk_dataset)]) == 0
    printed = capsys.readouterr().out
    assert f"org/{disk_dataset.name}: " in printed and "data/train-00000-of-00001.parquet" in printed
    assert main(["push", str(trained_run), "org/msa-disks", "--dry-run", "--dataset-repo-id", "org/d"]) == 2
    assert "pass --dataset" in capsys.readouterr().err


def test_dataset_and_space_pushes(disk_dataset, hub):
    from msa_hf.hub.push import SPACE_APP, push_dataset, push_space

    push_dataset(disk_dataset, "org/disks")
    files = hub.repos[("dataset", "org/disks")]["files"]
    assert "README.md" in files and "classes.json" in files
    assert any(p.startswith("data/train-") and p.endswith(".parquet") for p in files)
    assert b"split: train" in files["README.md"]
    push_space("org/msa-demo", "org/msa-disks")
    space = hub.repos[("space", "org/msa-demo")]
    assert space["sdk"] == "gradio" and space["files"]["msa_model.txt"] == b"org/msa-disks"
    assert space["files"]["app.py"] == SPACE_APP.encode() and b"sdk: gradio" in space["files"]["README.md"]
    # the Space's example images come with msa_hf itself, inside the wheel it installs
    (wheel,) = [content for path, content in space["files"].items() if path.startswith("wheels/")]
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("msa_hf/demo/examples/")}
    assert {"msa_hf/demo/examples/mni152_axial_a.png", "msa_hf/demo/examples/README.md"} <= shipped


def test_a_space_of_your_own_folder_is_pushed_with_its_app(hub, tmp_path, capsys):
    from msa_hf.cli import main
    from msa_hf.hub.push import push_space

    with pytest.raises(FileNotFoundError, match="has no app.py"):
        push_space("org/mine", "org/msa-disks", space_folder=tmp_path)
    (tmp_path / "app.py").write_text("print('my page')\n")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "logo.svg").write_text("<svg/>")
    assert (
        main(["push-space", "org/mine", "org/msa-disks", "--space-folder", str(tmp_path), "--dry-run"]) == 0
    )
    assert "assets/logo.svg" in capsys.readouterr().out and ("space", "org/mine") not in hub.repos
    push_space("org/mine", "org/msa-disks", space_folder=tmp_path)
    files = hub.repos[("space", "org/mine")]["files"]
    assert files["app.py"] == b"print('my page')\n" and files["assets/logo.svg"] == b"<svg/>"
    assert files["msa_model.txt"] == b"org/msa-disks" and any(p.startswith("wheels/") for p in files)


def test_a_space_is_asked_onto_the_hardware_named_and_its_card_suggests_it(hub, capsys):
    import yaml

    from msa_hf.cli import main
    from msa_hf.hub.push import PushError, push_space

    assert main(["push-space", "org/zero", "org/msa-disks", "--hardware", "zero-a10g", "--dry-run"]) == 0
    assert "hardware: zero-a10g" in capsys.readouterr().out and ("space", "org/zero") not in hub.repos
    assert main(["push-space", "org/zero", "org/msa-disks", "--hardware", "h100-huge"]) == 2
    assert "zero-a10g is ZeroGPU" in capsys.readouterr().err and ("space", "org/zero") not in hub.repos
    assert main(["push-space", "org/zero", "org/msa-disks", "--hardware", "zero-a10g"]) == 0
    assert "hardware: zero-a10g requested" in capsys.readouterr().out
    space = hub.repos[("space", "org/zero")]
    metadata = yaml.safe_load(space["files"]["README.md"].decode().split("---")[1])
    assert space["hardware"] == "zero-a10g" and metadata["suggested_hardware"] == "zero-a10g"
    # an account the Hub will not give that hardware: the Space is published all the same, and the error says so
    hub.refuse_hardware = True
    with pytest.raises(PushError, match=r"published \(.*\), but the Hub did not grant the hardware t4-small"):
        push_space("org/t4", "org/msa-disks", hardware="t4-small")
    assert (
        "msa_model.txt" in hub.repos[("space", "org/t4")]["files"]
        and "hardware" not in hub.repos[("space", "org/t4")]
    )


def test_push_creates_the_runs_space_on_the_hardware_named(trained_run, hub, capsys):
    from msa_hf.cli import main

    command = ["push", str(trained_run), "org/msa-run", "--space-repo-id", "org/msa-run-demo"]
    assert main([*command, "--space-hardware", "t4", "--dry-run"]) == 2  # refused before anything is uploaded
    assert "--space-hardware 't4': not a Space hardware" in capsys.readouterr().err
    assert main([*command, "--space-hardware", "zero-a10g", "--dry-run"]) == 0
    assert "would create Space org/msa-run-demo serving org/msa-run on zero-a10g" in capsys.readouterr().out
    assert not hub.repos
    assert main([*command, "--space-hardware", "zero-a10g"]) == 0
    assert "(hardware zero-a10g requested)" in capsys.readouterr().out
    assert hub.repos[("space", "org/msa-run-demo")]["hardware"] == "zero-a10g"
    assert hub.repos[("space", "org/msa-run-demo")]["files"]["msa_model.txt"] == b"org/msa-run"


def test_space_with_task_adapters_and_its_card(hub, capsys):
    import json

    import yaml
    from packaging.specifiers import SpecifierSet

    from msa_hf.cli import main
    from msa_hf.hub.push import SPACE_APP, SPACE_PYTHON, render_space_card

    # the checkout's Space folder holds what a push generates (its README: the template's generic rendering),
    # so the two cannot drift apart
    space_folder = Path(__file__).resolve().parents[1] / "spaces" / "msa-demo"
    assert (space_folder / "README.md").read_text() == render_space_card()
    assert (space_folder / "app.py").read_text() == SPACE_APP
    adapters = {"liver": "org/msa-liver-adapter", "kidney": "org/msa-kidney-adapter"}
    assert main(["push-space", "org/organs", "org/sam-base", "--adapter", "liver=org/msa-liver-adapter",
                 "--adapter", "kidney=org/msa-kidney-adapter", "--dry-run"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "adapters.json" in printed and "app.py" in printed and ("space", "org/organs") not in hub.repos
    assert main(["push-space", "org/organs", "org/sam-base", "--adapter", "liver=org/msa-liver-adapter",
                 "--adapter", "kidney=org/msa-kidney-adapter"]) == 0  # fmt: skip
    files = hub.repos[("space", "org/organs")]["files"]
    assert json.loads(files["adapters.json"]) == adapters and files["msa_model.txt"] == b"org/sam-base"
    readme = files["README.md"].decode()
    metadata = yaml.safe_load(readme.split("---")[1])
    assert metadata["sdk"] == "gradio" and metadata["models"] == ["org/sam-base", *adapters.values()]
    # a Space runs Python 3.10 unless told: the card names one that msa_hf installs on
    requires_python = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"
    ]["requires-python"]
    assert metadata["python_version"] == SPACE_PYTHON and SPACE_PYTHON in SpecifierSet(requires_python)
    assert "3.10" not in SpecifierSet(requires_python)  # the default would fail to install it
    assert "suggested_hardware" not in metadata  # no hardware asked for: the Space's own
    assert "| liver | [`org/msa-liver-adapter`]" in readme and "McGill University" in readme
    assert main(["push-space", "org/organs", "org/sam-base", "--adapter", "liver"]) == 2
    assert "NAME=REPO" in capsys.readouterr().err


def test_no_path_of_this_machine_in_any_pushed_file(trained_run, tiny_base, disk_dataset, hub):
    push_run(trained_run, "org/msa-paths", dataset_repo_id="org/disks")
    local_roots = {
        str(trained_run),
        str(tiny_base),
        str(disk_dataset),
        str(trained_run.parent),
        "/tmp/",
        "/work/",
    }
    import json

    for (_repo_type, repo_id), repo in hub.repos.items():
        for name, content in repo["files"].items():
            if name.endswith((".safetensors", ".bin")):
                continue
            text = content.decode("utf-8", errors="replace")
            leaks = [root for root in local_roots if root in text]
            assert not leaks, f"{repo_id}/{name} names {leaks}"
    adapter_config = json.loads(hub.repos[("model", "org/msa-paths-adapter")]["files"]["adapter_config.json"])
    assert adapter_config["base_model_name_or_path"] is None  # a local base: no Hub id to name


@pytest.mark.parametrize(
    ("base", "metadata_line", "snippet"),
    [
        ("facebook/sam-vit-base", "base_model: facebook/sam-vit-base", 'SamModel.from_pretrained("facebook/sam-vit-base")'),
        ("tiny", None, "SamModel.from_pretrained(msa_hf.TINY_BASE)"),
        ("LOCAL", None, 'SamModel.from_pretrained("<your copy of the base>")'),
    ],
)  # fmt: skip
def test_adapter_card_names_the_sam_base(trained_run, tmp_path, base, metadata_line, snippet):
    import shutil

    import yaml
    from huggingface_hub import ModelCard

    from msa_hf.hub.push import _adapter_card
    from msa_hf.training.base_loading import hub_id_of_base

    run = tmp_path / "run"
    shutil.copytree(trained_run / "model", run / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    base = str(tmp_path / "my-base") if base == "LOCAL" else base
    (tmp_path / "my-base").mkdir()
    (run / "train_config.yaml").write_text(yaml.safe_dump({"base": base}))
    card = _adapter_card(run, "org/msa-x-adapter", "org/msa-x")
    assert ModelCard(card).data.base_model == hub_id_of_base(base)
    assert (metadata_line in card) if metadata_line else ("base_model:" not in card)
    assert snippet in card and str(tmp_path) not in card and "<base>" not in card
    assert hub_id_of_base("facebook/sam-vit-base") == "facebook/sam-vit-base"
    assert hub_id_of_base("tiny") is None and hub_id_of_base("sam_vit_b.pth") is None
    assert hub_id_of_base(str(tmp_path / "my-base")) is None and hub_id_of_base("a/b/c") is None


def test_a_pushed_model_loads_where_msa_hf_is_not_installed(trained_run, hub, tmp_path):
    """`AutoModel.from_pretrained(repo, trust_remote_code=True)` builds the model from the repo's own code,
    in a Python that cannot import msa_hf, and computes what the local model computes."""
    import json
    import os
    import re
    import subprocess
    import sys

    push_run(trained_run, "org/msa-remote")
    files = hub.repos[("model", "org/msa-remote")]["files"]
    assert json.loads(files["config.json"])["auto_map"]["AutoModel"] == "modeling_msa.SamAdapterModel"
    code_files = {name: files[name].decode() for name in files if name.endswith(".py")}
    assert {"configuration_msa.py", "modeling_msa.py"} <= set(code_files)
    assert not any(re.search(r"^\s*(from|import) msa_hf", text, re.M) for text in code_files.values())
    code = """
import importlib.abc, sys
class HideMsaHf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "msa_hf" or name.startswith("msa_hf."):
            raise ImportError("msa_hf is not installed here")
sys.meta_path.insert(0, HideMsaHf())
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained("org/msa-remote", trust_remote_code=True).eval()
assert not any(name.startswith("msa_hf") for name in sys.modules)
pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
points, labels = torch.tensor([[[[20.0, 30.0]]], [[[40.0, 12.0]]]]), torch.ones(2, 1, 1, dtype=torch.long)
with torch.no_grad():
    masks = model(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
torch.save({"masks": masks, "class": type(model).__name__}, sys.argv[1])
"""
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out.pt")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt", weights_only=True)
    local = SamAdapterModel.from_pretrained(trained_run / "model").eval()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    points, labels = torch.tensor([[[[20.0, 30.0]]], [[[40.0, 12.0]]]]), torch.ones(2, 1, 1, dtype=torch.long)
    with torch.no_grad():
        expected = local(pixel_values=pixel_values, input_points=points, input_labels=labels).pred_masks
    assert remote["class"] == "SamAdapterModel"
    torch.testing.assert_close(remote["masks"], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("repo_id", ["", "a/b/c", "../../etc/passwd", "org/bad name!", "just-a-name"])
def test_bad_repo_ids_are_refused_before_anything_happens(trained_run, hub, repo_id, capsys):
    from msa_hf.cli import main
    from msa_hf.hub.push import PushError

    with pytest.raises(PushError, match="org/name"):
        push_run(trained_run, repo_id, dry_run=True)
    assert main(["push", str(trained_run), repo_id, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and repr(repo_id) in err and "Traceback" not in err
    assert main(["push-space", repo_id, "org/msa-x", "--dry-run"]) == 2
    assert hub.repos == {}


def test_a_refused_token_and_a_failing_hub_say_so_and_publish_nothing_half_way(trained_run, hub, monkeypatch):
    from msa_hf.hub.push import PushError

    hub.tokens = {"hf_right_token"}
    with pytest.raises(PushError, match="refused the token .* write access to org"):
        push_run(trained_run, "org/msa-denied", token="hf_wrong_token")
    assert hub.repos == {}
    hub.fail_commits_to = {"org/msa-fail-adapter"}
    with pytest.raises(
        PushError,
        match=r"org/msa-fail-adapter: the Hub failed .* Already published by this push: org/msa-fail\.",
    ):
        push_run(trained_run, "org/msa-fail", token="hf_right_token")
    assert hub.repos[("model", "org/msa-fail")]["files"]  # the model's one commit went through
    assert hub.repos[("model", "org/msa-fail-adapter")]["files"] == {}  # the adapter's did not, at all
    local = {p.name for p in (trained_run / "model").iterdir()}
    assert {"config.json", "model.safetensors", "adapter"} <= local  # nothing local touched


def test_train_py_pushes_when_asked(tiny_base, disk_dataset, hub, tmp_path, capsys):
    from msa_hf.training.job import main

    common = ["--base", str(tiny_base), "--dataset", str(disk_dataset), "--steps", "2", "--batch-size", "4",
              "--eval-every", "2", "--log-with", "none", "--push-to-hub"]  # fmt: skip
    # a repo id that cannot be pushed to is refused before any training
    assert main([*common, "--output-dir", str(tmp_path / "bad"), "--hub-model-id", "not a repo"]) == 2
    assert "hub_model_id 'not a repo'" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main([*common, "--output-dir", str(tmp_path / "none")]) == 2
    assert "--hub-model-id" in capsys.readouterr().err
    assert main([*common, "--output-dir", str(tmp_path / "run"), "--hub_model_id", "org/msa-trained"]) == 0
    assert "pushed:" in capsys.readouterr().out
    pushed = hub.repos[("model", "org/msa-trained")]["files"]
    assert pushed["model.safetensors"] == (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    assert "adapter_model.safetensors" in hub.repos[("model", "org/msa-trained-adapter")]["files"]


def test_the_model_card_says_what_a_retention_option_keeps_and_nothing_without_one():
    from msa_hf.hub.model_card import render_model_card
    from msa_hf.training.config import TrainConfig

    result = {"trainable_parameters": 10, "total_parameters": 100, "steps": 5}

    def bullets(**options) -> list[str]:
        config = TrainConfig(base="tiny", dataset="data/disks", output_dir="runs/x", **options)
        card = render_model_card(config, result, "", None)
        body = card.split("\n---\n", 1)[1]
        return [line for line in body.splitlines() if line.startswith("- ")]

    plain = bullets()
    assert [line.split(":")[0] for line in plain] == [
        "- Trainable parameters",
        "- Training",
        "- Research code, **not for clinical use**.",
    ]
    fallback = bullets(base_fallback=True)
    assert fallback[2].startswith("- Retention: answers with its base") and "twice per image" in fallback[2]
    assert fallback[3] == plain[2]  # the list goes on after it
    both = bullets(distill_probability=0.5, distill_outside_labels=True, replay_share=0.25)[2]
    assert both == (
        "- Retention: self-distilled from its base on 50% of the steps, prompted off the adapted structures; "
        "25% of every batch replayed from its base's synthetic pictures."
    )


def test_the_model_card_names_the_channel_a_multi_channel_model_reads():
    from msa_hf.hub.model_card import render_model_card
    from msa_hf.training.config import TrainConfig

    config = TrainConfig(base="tiny", dataset="data/brats", output_dir="runs/x")
    result = {"trainable_parameters": 10, "total_parameters": 100, "steps": 5}
    assert "Multi-channel" not in render_model_card(config, result, "", None)
    card = render_model_card(config, {**result, "channel": "0 (flair)"}, "", None)
    (line,) = [line for line in card.splitlines() if line.startswith("- Multi-channel")]
    assert "trained on channel 0 (flair)" in line and "`--channel` reads another" in line
