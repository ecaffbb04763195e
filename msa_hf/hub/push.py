# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Publishing a trained run to the Hub (`msa-hf push`): the full model with its processor and card, and the
adapter-only peft checkpoint as a second repo. A dry run lists what would go where, uploading nothing.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub.errors import HfHubHTTPError


class PushError(ValueError):
    """A push that cannot start or did not finish; the message names the repo and what to do."""


def check_repo_id(repo_id: str, what: str = "repo id") -> str:
    """`repo_id` if it is a Hub repo id of the form `org/name`, else a `PushError` saying how to write one."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problem = None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        problem = "expected the form org/name"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            problem = "not a valid name"
    if problem:
        raise PushError(
            f"{what} {repo_id!r}: {problem}; use org/name with letters, digits, '-', '_' or '.' (for example "
            "org/msa-liver)."
        )
    return repo_id


@contextmanager
def hub_errors(repo_id: str, published: list[str] | None = None):
    """Turn the Hub client's errors while writing `repo_id` into one clear `PushError`. Each repo is written
    in one commit, so a failed repo has none of this push; `published` lists the repos already written."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    done = f" Already published by this push: {', '.join(published)}." if published else ""
    try:
        yield
    except LocalTokenNotFoundError as error:
        raise PushError(
            f"{repo_id}: no Hub token. Pass --token, set HF_TOKEN, or run `hf auth login`.{done}"
        ) from error
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise PushError(
                f"{repo_id}: the Hub refused the token (HTTP {status}); use a token with write access to "
                f"{repo_id.split('/')[0]} (--token or HF_TOKEN).{done}"
            ) from error
        raise PushError(
            f"{repo_id}: the Hub failed ({http_failure(error)}); nothing of this push was committed to "
            f"{repo_id}. Run the command again.{done}"
        ) from error


def http_failure(error: HfHubHTTPError) -> str:
    """What the Hub answered to a failed request (an `HfHubHTTPError`): "HTTP <status>: <its first line>"."""
    status = getattr(error.response, "status_code", None)
    return f"HTTP {status}: {str(error).splitlines()[0][:200]}"


@dataclass
class PushPlan:
    """What `push_run` uploads: repo id -> [(path in repo, size in bytes)]."""

    uploads: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    revision: str | None = None
    private: bool = False

    def describe(self) -> str:
        lines = []
        for repo_id, files in self.uploads.items():
            total = sum(size for _, size in files)
            where = f"{repo_id}@{self.revision}" if self.revision else repo_id
            lines.append(
                f"{where}{' (private)' if self.private else ''}: {len(files)} files, {total / 1e6:.2f} MB"
            )
            lines += [f"  {path} ({size:,} bytes)" for path, size in files]
        return "\n".join(lines)


def _files(folder: Path, exclude: str | None = None) -> list[tuple[str, int]]:
    return [
        (str(p.relative_to(folder)), p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (exclude and p.relative_to(folder).parts[0] == exclude)
    ]


def _adapter_card(run_dir: Path, repo_id: str, full_repo: str) -> str:
    """The adapter repo's card: `base_model` is the SAM base the adapter goes on (when it is a Hub repo),
    and the snippet loads exactly that base."""
    import json

    import yaml

    from msa_hf import __version__
    from msa_hf.hub.cards import read_template
    from msa_hf.hub.model_card import public_name
    from msa_hf.training.base_loading import TINY_BASE_NAME, hub_id_of_base

    config = json.loads((run_dir / "model" / "config.json").read_text())
    depth = ", and the depth branch" if config.get("use_depth_branch") else ""
    train_config = run_dir / "train_config.yaml"
    base = (yaml.safe_load(train_config.read_text()) or {}).get("base", "") if train_config.is_file() else ""
    base_id = hub_id_of_base(base) if base else None
    if base_id:
        base_line, expression, note = f"base_model: {base_id}\n", f'"{base_id}"', f"`{base_id}`"
    elif base == TINY_BASE_NAME:
        base_line, expression, note = "", "msa_hf.TINY_BASE", "msa_hf's shipped synthetic-pretrained base"
    else:
        shown = public_name(base) if base else "unknown"
        base_line, expression, note = "", '"<your copy of the base>"', f"trained on a local base, `{shown}`"
    return Template(read_template("adapter_card.md")).substitute(
        base_model_line=base_line,
        base_expression=expression,
        base_note=note,
        version=__version__,
        name=repo_id.split("/")[-1],
        full_repo=full_repo,
        repo_id=repo_id,
        depth_note=depth,
    )


def _model_card_linking_dataset(model_dir: Path, dataset_repo_id: str | None) -> bytes | None:
    """The run's model card with `datasets:` and its results' dataset pointing at `dataset_repo_id` (so the
    Hub links the published dataset); None when there is no card or no dataset repo."""
    card_path = model_dir / "README.md"
    if dataset_repo_id is None or not card_path.is_file():
        return None
    from huggingface_hub import ModelCard

    card = ModelCard(card_path.read_text())
    card.data.datasets = [dataset_repo_id]
    for result in card.data.eval_results or []:
        result.dataset_type = result.dataset_name = dataset_repo_id
    return str(card).encode()


def push_run(
    run_dir: str | Path,
    repo_id: str,
    adapter_repo_id: str | None = None,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    dataset_repo_id: str | None = None,
) -> PushPlan:
    """Upload `run_dir/model` to `repo_id` and its `adapter/` to `adapter_repo_id` (default
    `<repo_id>-adapter`), each with its card.

    Args:
        revision: a branch to push to (created from main when missing).
        dry_run: only return the plan.
        dataset_repo_id: the dataset repo the run's data is (or will be) published to; the model card then
            names it under `datasets:` and in its results, instead of the local folder's name.
    Raises:
        FileNotFoundError: the run has no `model/` (train first).
    """
    check_repo_id(repo_id)
    if adapter_repo_id is not None:
        check_repo_id(adapter_repo_id, "adapter repo id")
    if dataset_repo_id is not None:
        check_repo_id(dataset_repo_id, "dataset repo id")
    model_dir = Path(run_dir) / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json: is {run_dir} a finished train.py run?")
    adapter_dir = model_dir / "adapter"
    adapter_repo_id = adapter_repo_id or f"{repo_id}-adapter"
    # files whose pushed content differs from the run's: the card naming the published dataset, and for an
    # MSA model the config with `auto_map` plus the modeling code, so it loads without msa_hf installed
    model_overrides: dict[str, bytes] = {}
    model_card = _model_card_linking_dataset(model_dir, dataset_repo_id)
    if model_card is not None:
        model_overrides["README.md"] = model_card
    config_json = (model_dir / "config.json").read_bytes()
    if json.loads(config_json).get("model_type") == "sam_adapter":
        from msa_hf.hub.remote_code import config_with_auto_map, remote_code_files

        model_overrides["config.json"] = config_with_auto_map(config_json)
        model_overrides.update(remote_code_files())
    files = {repo_id: _uploads(model_dir, model_overrides, exclude="adapter")}
    if adapter_dir.is_dir():
        # our card replaces the one peft's save_pretrained wrote
        adapter_card = _adapter_card(Path(run_dir), adapter_repo_id, repo_id).encode()
        files[adapter_repo_id] = _uploads(adapter_dir, {"README.md": adapter_card})
    plan = PushPlan(revision=revision, private=private)
    plan.uploads = {
        target: [(path, len(content) if isinstance(content, bytes) else content.stat().st_size)
                 for path, content in uploads.items()]
        for target, uploads in files.items()
    }  # fmt: skip
    if dry_run:
        return plan
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    published: list[str] = []
    for target, uploads in files.items():
        with hub_errors(target, published):
            api.create_repo(target, private=private, exist_ok=True)
            if revision:
                api.create_branch(target, branch=revision, exist_ok=True)
            # one commit per repo: a failed upload publishes nothing half-way
            operations = [
                CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes) else str(content))
                for path, content in uploads.items()
            ]  # fmt: skip
            what = "MSA model" if target == repo_id else "MSA adapter"
            api.create_commit(target, operations, commit_message=f"Upload {what} (msa_hf)", revision=revision)
        published.append(target)
    return plan


def _uploads(
    folder: Path, overrides: dict[str, bytes], exclude: str | None = None
) -> dict[str, Path | bytes]:
    """Path in repo -> the file to upload, or the bytes that replace or add to it."""
    uploads: dict[str, Path | bytes] = {path: folder / path for path, _ in _files(folder, exclude=exclude)}
    uploads.update(overrides)
    return dict(sorted(uploads.items()))


def dataset_push_plan(dataset_dir: str | Path, repo_id: str, private: bool = False) -> PushPlan:
    """What `push_dataset` uploads (every file of the prepared dataset directory).

    Raises:
        FileNotFoundError: `dataset_dir` is not a prepared dataset directory.
    """
    check_repo_id(repo_id, "dataset repo id")
    folder = Path(dataset_dir)
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise FileNotFoundError(f"{folder} is not a prepared dataset directory (msa-hf prepare writes one).")
    return PushPlan(uploads={repo_id: _files(folder)}, private=private)


def default_dataset_repo_id(model_repo_id: str, dataset_dir: str | Path) -> str:
    """`org/<dataset folder name>` for a model pushed to `org/...` (the folder's name alone without an org)."""
    name = Path(dataset_dir).resolve().name
    return f"{model_repo_id.split('/')[0]}/{name}" if "/" in model_repo_id else name


def push_dataset(
    dataset_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Upload a prepared dataset directory (card, `data/*.parquet`, `classes.json`, report) as a dataset
    repo; `load_dataset(repo_id)` then reads the splits its card declares. Returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(dataset_dir)
    dataset_push_plan(folder, repo_id)  # checks the repo id and the folder before anything is created
    api = HfApi(token=token)
    with hub_errors(repo_id):
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message="Upload dataset (msa_hf)",
        )
    return str(commit)


# A demo Space's app.py: the page is `msa_hf.demo.app`, shipped in the package (with its example images), so a
# Space is made from an installed msa_hf as well as from a checkout. A checkout's `spaces/msa-demo/` holds the
# same app.py, the README `render_space_card()` writes and a requirements.txt that installs the checkout.
SPACE_APP = '''# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo Space: msa_hf's Gradio page (`msa_hf.demo.app`) serving the model this folder names.

`MSA_MODEL` (a Hub id or folder) picks the model, else `msa_model.txt` beside this file, else msa_hf's shipped
small base; `MSA_ADAPTERS` or `adapters.json` beside this file offer task adapters on one base. `MSA_DEVICE`
and `MSA_DTYPE` (a Space's variables) set where the model runs: by default a GPU in bfloat16 where the Space
has one, else the CPU in float32 (`MSA_DTYPE=bfloat16` encodes a ViT-B or larger about twice as fast on a
CPU with Intel AMX). On ZeroGPU hardware the images are encoded on the GPU it lends per call and the clicks
decoded on the CPU.
"""

from pathlib import Path

from msa_hf.demo.app import serve

if __name__ == "__main__":
    serve(Path(__file__).resolve().parent)
'''


# The Python a pushed Space runs. A Space runs Python 3.10 unless its card names another, and msa_hf needs 3.11 or
# newer (pyproject.toml's requires-python; a test keeps the two in step): without it the Space's build fails
# at installing msa_hf. 3.12: inside that range, with wheels of everything the demo installs (on 3.14 the
# dicom extra's JPEG-LS codec compiles from source).
SPACE_PYTHON = "3.12"

DEFAULT_SERVING = (
    "The model comes from the `MSA_MODEL` variable (a Hub id or folder), else `msa_model.txt`, else msa_hf's "
    'shipped small base. Several task adapters on one base: `MSA_ADAPTERS` (JSON `{"name": "adapter '
    'repo", ...}`) or an `adapters.json` file, with the base in `MSA_BASE` or `msa_model.txt`; a menu then '
    "picks the adapter."
)


def check_space_hardware(hardware: str, option: str = "--hardware") -> str:
    """`hardware` if it names a Space hardware of the Hub's (`huggingface_hub.SpaceHardware`: "zero-a10g" is
    ZeroGPU, "t4-small" a T4, ...). Raises `ValueError` listing them otherwise, naming the `option` given."""
    from huggingface_hub import SpaceHardware

    flavors = [flavor.value for flavor in SpaceHardware]
    if hardware not in flavors:
        raise ValueError(
            f"{option} {hardware!r}: not a Space hardware the Hub offers (zero-a10g is ZeroGPU); use one of "
            f"{', '.join(flavors)}."
        )
    return hardware


def render_space_card(
    model_repo_id: str | None = None,
    adapters: dict[str, str] | None = None,
    title: str = "Medical SAM Adapter",
    hardware: str | None = None,
) -> str:
    """The Space README from `msa_hf/hub/cards/space_card.md`: Space metadata (Gradio version, the Python it
    runs, `SPACE_PYTHON`, the `hardware` it was pushed for as `suggested_hardware`, which a duplicate of it
    offers, the served model repos under `models:`, so the Hub links them) and what it serves. No arguments:
    the generic README of a checkout's `spaces/msa-demo/`."""
    import gradio

    from msa_hf.hub.cards import read_template

    models = ([model_repo_id] if model_repo_id and "/" in model_repo_id else []) + list(
        (adapters or {}).values()
    )
    models_yaml = "models:\n" + "".join(f"- {m}\n" for m in models) if models else ""
    if adapters:
        rows = "\n".join(
            f"| {name} | [`{repo}`](https://huggingface.co/{repo}) |" for name, repo in adapters.items()
        )
        serving = (
            f"Task adapters on the base `{model_repo_id}` (pick one in the menu):\n\n| task | adapter |\n|---|---|\n"
            f"{rows}"
        )
    elif model_repo_id:
        serving = f"Serves [`{model_repo_id}`](https://huggingface.co/{model_repo_id})."
    else:
        serving = DEFAULT_SERVING
    return Template(read_template("space_card.md")).substitute(
        title=title,
        gradio_version=gradio.__version__,
        python_version=SPACE_PYTHON,
        hardware_yaml=f"suggested_hardware: {hardware}\n" if hardware else "",
        models_yaml=models_yaml,
        serving=serving,
    )


def space_files(
    model_repo_id: str,
    space_folder: str | Path | None = None,
    adapters: dict[str, str] | None = None,
    hardware: str | None = None,
) -> dict[str, Path | bytes]:
    """Everything a demo Space needs, as `push_space` uploads it: path in the Space repo -> a file of
    `space_folder` or generated bytes.

    Generated: `app.py` (`SPACE_APP`, which serves `msa_hf.demo.app`'s page) unless `space_folder` (a Space of
    your own, with its own `app.py`) is given, the README (from `msa_hf/hub/cards/space_card.md`),
    `msa_model.txt` (the served repo), `adapters.json` (task adapters), a wheel of this msa_hf under `wheels/`
    and a `requirements.txt` that installs it with the demo, medical and dicom extras (msa_hf is not on PyPI, so the
    Space builds from its own copy; everything else comes from PyPI).
    """
    import json

    from msa_hf.hub.wheel import build_wheel

    if space_folder is None:
        copied: dict[str, Path | bytes] = {"app.py": SPACE_APP.encode()}
    else:
        folder = Path(space_folder)
        if not (folder / "app.py").is_file():
            raise FileNotFoundError(f"{folder} has no app.py: a Space folder needs the app it runs.")
        copied = {
            p.relative_to(folder).as_posix(): p
            for p in sorted(folder.rglob("*"))
            if p.is_file()
            and "__pycache__" not in p.parts
            and not p.relative_to(folder).as_posix().startswith("wheels/")
        }
    if adapters is not None and (not adapters or any(not name.strip() for name in adapters)):
        raise ValueError(f"task adapters must be non-empty names -> repos; got {adapters}.")
    wheel_name, wheel = build_wheel()
    generated: dict[str, Path | bytes] = {
        "README.md": render_space_card(model_repo_id, adapters, hardware=hardware).encode(),
        "msa_model.txt": model_repo_id.encode(),
        f"wheels/{wheel_name}": wheel,
        "requirements.txt": f"./wheels/{wheel_name}[demo,medical,dicom]\n".encode(),
    }
    if adapters:
        generated["adapters.json"] = json.dumps(adapters, indent=2).encode()
    return {**copied, **generated}


def push_space(
    repo_id: str,
    model_repo_id: str,
    space_folder: str | Path | None = None,
    token: str | None = None,
    adapters: dict[str, str] | None = None,
    dry_run: bool = False,
    hardware: str | None = None,
) -> str:
    """Create a Gradio Space serving `model_repo_id` with msa_hf's demo page (or the app in `space_folder`),
    with everything it needs to build (`space_files`), in one commit.

    With `adapters` (task name -> adapter repo), `model_repo_id` is the base and the demo offers the adapters
    in a menu. With `hardware` (`check_space_hardware`: "zero-a10g" for ZeroGPU, "t4-small", ...), the Space
    is then asked to run on it. Returns the commit URL, or with `dry_run` the list of files that would be
    uploaded.

    Raises:
        PushError: the Hub refused the push, or (the Space published) the hardware.
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id, "Space repo id")
    check_repo_id(model_repo_id, "served model repo id")
    for name, adapter_repo in (adapters or {}).items():
        check_repo_id(adapter_repo, f"adapter {name!r} repo id")
    if hardware is not None:
        check_space_hardware(hardware)
    files = space_files(model_repo_id, space_folder, adapters, hardware)
    if dry_run:
        return "\n".join(files) + (f"\n(then the Space's hardware: {hardware})" if hardware else "")
    api = HfApi(token=token)
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes) else str(content))
        for path, content in files.items()
    ]  # fmt: skip
    with hub_errors(repo_id):
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
        commit = api.create_commit(
            repo_id, operations, repo_type="space", commit_message=f"Demo of {model_repo_id}"
        )
    if hardware is not None:
        try:
            api.request_space_hardware(repo_id, hardware)
        except HfHubHTTPError as error:  # the Space stands, on the hardware it had
            raise PushError(
                f"{repo_id}: published ({commit}), but the Hub did not grant the hardware {hardware} "
                f"({http_failure(error)}). ZeroGPU (zero-a10g) needs a PRO account or an organisation's Team or "
                "Enterprise plan, the other GPUs a payment method on the account; choose the hardware in the "
                "Space's settings."
            ) from error
    return str(commit)
