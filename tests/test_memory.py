"""engine.keep_freed_memory (engine/_memory.py): opt-in for the process's owner, on in Fita's workers."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt")

CHECK = ("import engine; from engine import _memory; before = _memory.kept; "
         "print(before, engine.keep_freed_memory(), _memory.kept)")


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "ENGINE_KEEP_FREED_MEMORY"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_importing_the_engine_leaves_malloc_alone_and_the_call_keeps_freed_memory():
    assert _run(CHECK) == ["False", "True", "True"]
    assert _run(CHECK, ENGINE_KEEP_FREED_MEMORY="0") == ["False", "False", "False"]


def test_workers_keep_freed_memory_for_their_work_processes():
    code = "from workers import worker; from engine import _memory; worker._preload(); print(_memory.kept)"
    assert _run(code) == ["True"]
