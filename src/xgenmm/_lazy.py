"""Lazy package exports (PEP 562): a package's public names are imported from their modules on
first use, so that importing a light part of the package (the command line's parser, the
synthetic world's scenes) does not import torch and transformers, which take seconds."""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """The module-level `__getattr__` and `__dir__` of package `package`, whose public names
    `exports` maps to the (relative) module defining each: `from package import Name` and
    `package.Name` import that module on first use and keep the name in the package."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
