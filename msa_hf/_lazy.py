# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Names a room's `__init__` offers without importing its modules until one is used.

Each room (`msa_hf.inference`, `msa_hf.training`, ...) lists its public names and the module holding each.
Importing the room stays cheap (`msa-hf --help` loads no torch model code), and a module of one room can
import another room's module without a cycle through the rooms' `__init__` files.
"""

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """`__getattr__` and `__dir__` for a package whose public names live in its submodules.

    Args:
        package: the package's dotted name (`__name__` of its `__init__`).
        exports: public name -> submodule (relative to `package`) that defines it.
    """

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
