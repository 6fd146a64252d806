"""Every public name in trio_mud has a docstring (the API reference is built from them)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import trio_mud


def _missing() -> list[str]:
    missing = []
    for info in pkgutil.walk_packages(trio_mud.__path__, "trio_mud."):
        if info.name.endswith("__main__") or ".webclient" in info.name:
            continue
        module = importlib.import_module(info.name)
        if not module.__doc__:
            missing.append(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not obj.__doc__:
                missing.append(f"{info.name}.{name}")
            if inspect.isclass(obj):
                for method_name, method in vars(obj).items():
                    if method_name.startswith("_") or not inspect.isfunction(method):
                        continue
                    inherited = any(
                        getattr(getattr(base, method_name, None), "__doc__", None)
                        for base in obj.__mro__[1:]
                    )
                    if not method.__doc__ and not inherited:
                        missing.append(f"{info.name}.{name}.{method_name}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    assert _missing() == []
