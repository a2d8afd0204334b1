"""engine/_memory.py: freed host memory is kept for reuse (glibc's mallopt), unless switched off."""
import os
import subprocess
import sys

import pytest

CHECK = "import engine; print(engine._memory.KEPT)"


def _kept(env_value):
    env = dict(os.environ)
    env.pop("ENGINE_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["ENGINE_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_unless_switched_off():
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _kept(None) == "True"
    assert _kept("0") == "False"
