"""What the benchmarks read of /proc and of the checkout (Linux only).

Shared by ``footprint.py``, ``reloads.py`` and ``soak.py``, which import it as a sibling
module (they run as scripts from this folder).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import trio

#: The checkout these benchmarks belong to.
REPO = Path(__file__).resolve().parent.parent


def children_of(pid: int) -> list[int]:
    """Child pids of ``pid``: from /proc/<pid>/task/*/children if the kernel has
    it, else by scanning every /proc/<n>/stat for its parent."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                kids.extend(int(x) for x in children.read().split())
        return kids
    except OSError:
        pass
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    text = stat.read().decode()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(name))
    return kids


def code_version(pythonpath: str | None) -> str:
    """The commit of the tree the servers import from, and files changed under trio_mud/."""
    root = Path(pythonpath) if pythonpath else REPO
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain", "trio_mud"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"{root} (not a git checkout)"
    return f"{root} at {head} with {len(changed)} uncommitted change(s) under trio_mud/"


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"Python {sys.version.split()[0]}, trio {trio.__version__}"
    )


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[0]


def take_snapshot(pythonpath: str | None) -> str:
    """A copy of the trio_mud/ the servers would import, so that every server process
    (every reload) runs the same code while the checkout changes; its parent dir."""
    source = (Path(pythonpath) if pythonpath else REPO) / "trio_mud"
    parent = tempfile.mkdtemp(prefix="bench-code-")
    shutil.copytree(source, Path(parent) / "trio_mud", ignore=shutil.ignore_patterns("__pycache__"))
    return parent


def write_calls(pids: Iterable[int]) -> dict[int, int]:
    """write(2) calls made so far (syscw of /proc/<pid>/io; send(2) is not
    among them), by pid; a process that is gone is left out."""
    calls = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as file:
                for line in file:
                    if line.startswith("syscw:"):
                        calls[pid] = int(line.split()[1])
        except OSError:
            pass
    return calls
