# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The modeling code a pushed MSA model carries, so it loads where msa_hf is not installed.

transformers' remote-code route: `config.json` gets an `auto_map` naming `configuration_msa.SamAdapterConfig`
and `modeling_msa.SamAdapterModel`, and the repo holds those files with every module they import, in one
folder with relative imports. `AutoModel.from_pretrained(repo, trust_remote_code=True)` then builds the model
from the repo's own code. Where msa_hf is installed, the plain route (`SamAdapterModel.from_pretrained`, or
`AutoModel` after `import msa_hf`) is unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MODELING = Path(__file__).resolve().parent.parent / "modeling"
# the model's code: the config, the model, and what they import (closed under imports; checked below)
MODULES = (
    "configuration_msa",
    "modeling_msa",
    "adapter_layers",
    "folded_attention",
    "frozen_mlp",
    "text_prompts",
    "volume_batches",
    "base_fallback",
)
AUTO_MAP = {
    "AutoConfig": "configuration_msa.SamAdapterConfig",
    "AutoModel": "modeling_msa.SamAdapterModel",
    "AutoModelForMaskGeneration": "modeling_msa.SamAdapterModel",
}


def remote_code_files() -> dict[str, bytes]:
    """`{file name: source}` of the model's modules, rewritten to import each other relatively and without
    msa_hf's registration (transformers reads `auto_map` instead).

    Raises:
        RuntimeError: a module imports a part of msa_hf outside `MODULES` (the bundle would not load).
    """
    files = {}
    for name in MODULES:
        source = (MODELING / f"{name}.py").read_text()
        source = re.sub(r"^from msa_hf\.modeling\.(\w+) import", r"from .\1 import", source, flags=re.M)
        # registration belongs to the installed package; a repo's code is found through auto_map
        source = re.sub(r"^from msa_hf\._registration import register_auto_classes\n", "", source, flags=re.M)
        source = re.sub(r"^(# .*\n)?register_auto_classes\(.*\)\n", "", source, flags=re.M)
        leftover = re.findall(r"^\s*(?:from|import) msa_hf\S*", source, flags=re.M)
        if leftover:
            raise RuntimeError(
                f"modeling/{name}.py imports {leftover}, which the pushed model code does not carry."
            )
        for imported in re.findall(r"^from \.(\w+) import", source, flags=re.M):
            if imported not in MODULES:
                raise RuntimeError(f"modeling/{name}.py imports .{imported}; add it to remote_code.MODULES.")
        files[f"{name}.py"] = source.encode()
    return files


def config_with_auto_map(config_json: bytes) -> bytes:
    """`config.json` with the `auto_map` that points transformers at the repo's own code."""
    config = json.loads(config_json)
    config["auto_map"] = dict(AUTO_MAP)
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
