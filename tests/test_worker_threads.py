"""A worker's CPU threads (FITA_WORKER_THREADS): the engine's and BLAS's pools are sized once, before
work processes fork; `fita up` splits the host's cores between its workers."""
import os
import subprocess
import sys

import pytest

from fita.supervisor import Supervisor, cpu_cores
from workers.settings import Settings


def test_settings_read_worker_threads():
    assert Settings.from_env({}).worker_threads == 0
    assert Settings.from_env({"FITA_WORKER_THREADS": "3"}).worker_threads == 3
    with pytest.raises(ValueError, match="FITA_WORKER_THREADS='-1' must be at least 0"):
        Settings.from_env({"FITA_WORKER_THREADS": "-1"})


def _run(code):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


BLAS = "sorted({lib['num_threads'] for lib in threadpool_info() if lib['user_api'] == 'blas'})"


def test_configure_threads_sizes_the_engine_and_blas():
    out = _run("import engine; from threadpoolctl import threadpool_info; from workers.worker import configure_threads\n"
               f"print(configure_threads(1), engine.get_num_threads(), {BLAS})\n")
    assert out.split() == ["1", "1", "[1]"]


def test_no_worker_threads_leaves_the_defaults():
    out = _run("import engine; from threadpoolctl import threadpool_info; from workers.worker import configure_threads\n"
               f"before = {BLAS}\n"
               f"print(configure_threads(0), engine.get_num_threads(), before == {BLAS})\n")
    assert out.split() == [str(cpu_cores()), str(cpu_cores()), "True"]


def test_up_splits_the_cores_between_its_workers():
    cores = cpu_cores()
    assert Supervisor(Settings(workers=1)).worker_threads == 0  # one worker keeps the defaults
    assert Supervisor(Settings(workers=2)).worker_threads == max(1, cores // 2)
    assert Supervisor(Settings(workers=4 * cores)).worker_threads == 1
    assert Supervisor(Settings(workers=2, worker_threads=3)).worker_threads == 3  # as set: not split
    assert Supervisor(Settings(workers=1, worker_threads=3)).worker_threads == 3
