"""Work done once, cells in worker processes, memory per phase, and a bench that owns its folder."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from adaptsam.bench.executors import LocalExecutor
from adaptsam.bench.measure import PeakMemory
from adaptsam.bench.spec import AdapterChoice, BenchSpec
from adaptsam.bench.store import BenchLock, ResultStore
from adaptsam.bench.worker import Worker, WorkerDied, run_isolated
from adaptsam.errors import BusyError, DataError
from tests.bench.conftest import TINY_FLAGS


def test_seed_invariant_cells_run_once_for_every_seed():
    spec = BenchSpec(backbones=("lite_medsam_test",), adapters=(AdapterChoice("frozen"), AdapterChoice("decoder")),
                     policies=("native",), resolutions=(32,), datasets=("synthetic",), seeds=(3, 1, 2),
                     pretrained=False)
    cells = spec.cells()
    frozen = [c for c in cells if c.adapter == "frozen"]
    assert len(frozen) == 1 and frozen[0].seed == 3 and frozen[0].seed_invariant
    assert sorted(c.seed for c in cells if c.adapter == "decoder") == [1, 2, 3]


def _allocate(megabytes: int) -> float:
    with PeakMemory("cpu") as peak:
        block = torch.ones(megabytes * 2**20 // 4)
        del block
    return peak.megabytes


def test_peak_memory_sees_a_phase_allocation_and_repeats():
    first, second = run_isolated(_allocate, 64), run_isolated(_allocate, 64)
    assert 60 <= first <= 72 and abs(first - second) <= 0.1 * first


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fail() -> None:
    raise ValueError("bad value 42")


def test_a_worker_that_dies_or_fails_says_how():
    with pytest.raises(WorkerDied, match="SIGKILL"):
        run_isolated(_die)
    with pytest.raises(ValueError, match="bad value 42"):
        run_isolated(_fail)


def test_a_second_lock_on_one_folder_names_the_holder(tmp_path):
    with BenchLock(tmp_path), pytest.raises(BusyError, match=f"pid {os.getpid()}"), BenchLock(tmp_path):
        pass
    with BenchLock(tmp_path):  # released: free again
        pass


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    junk = tmp_path / "results.sqlite"
    junk.write_text("not a database at all" * 100)
    with pytest.raises(DataError, match="not an adaptsam results store"):
        ResultStore(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(DataError, match="songs"):
        ResultStore(other)


def _bench(out, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "adaptsam", "bench", *TINY_FLAGS, "--out", str(out), *extra]
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _done(path) -> int:
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_second_bench_exits_at_once_and_sigterm_resumes_each_cell_once(tmp_path, tiny_spec):
    from adaptsam.bench.runner import run_bench

    out = tmp_path / "bench"
    first = _bench(out)
    deadline = time.time() + 240
    while _done(out / "results.sqlite") < 1 and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    started = time.time()
    second = _bench(out)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2 and time.time() - started < 15
    assert "in use by another adaptsam bench" in err and f"pid {first.pid}" in err and "Traceback" not in err
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "Traceback" not in err
    assert (out / "report.md").is_file()  # the report of what was done is written on the way out
    with ResultStore(out / "results.sqlite") as store:
        assert "running" not in store.statuses().values()
    run_bench(tiny_spec, out, progress=False, report=False)
    with ResultStore(out / "results.sqlite") as store:
        rows = store.rows()
    assert {r.status for r in rows} == {"done"} and len(rows) == len(tiny_spec.cells())
    assert all(r.attempts <= 2 for r in rows) and sum(r.attempts == 2 for r in rows) <= 1


def _mmap_threshold_holds() -> bool:
    """After keep_freed_memory, freeing a 64 MB block keeps it in the heap: the resident set stays up."""
    from adaptsam.bench.measure import _rss_bytes

    block = torch.ones(64 * 2**20 // 4)
    before = _rss_bytes()
    del block
    return _rss_bytes() > before - 32 * 2**20


def test_a_worker_keeps_freed_memory_for_the_next_pass():
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert run_isolated(_mmap_threshold_holds)


def test_cells_side_by_side_each_in_its_own_worker_on_its_share_of_the_cores(tmp_path, tiny_spec):
    from dataclasses import replace

    from adaptsam.bench.executors import threads_per_job
    from adaptsam.bench.runner import run_bench

    spec = replace(tiny_spec, jobs=2, adapters=(AdapterChoice("frozen"), AdapterChoice("decoder")), resolutions=(32,))
    summary = run_bench(spec, tmp_path, progress=False, report=True)
    assert summary.statuses == {"done": len(spec.cells())}
    with ResultStore(tmp_path / "results.sqlite") as store:
        rows = store.rows()
    assert {r.environment["jobs"] for r in rows} == {2}
    assert {r.environment["threads"] for r in rows} == {threads_per_job(2)}
    assert "2 cells at a time" in (tmp_path / "report.md").read_text()


def _die_on_upsample(threads: int, cell, out, device: str, precision: str):
    from adaptsam.bench.executors import _cell_on_threads

    if cell.policy == "upsample":
        os.kill(os.getpid(), signal.SIGKILL)
    return _cell_on_threads(threads, cell, out, device, precision)


class _DyingExecutor(LocalExecutor):
    def _start(self, cell, out, threads):
        return Worker(_die_on_upsample, threads, cell, out, "cpu", "fp32")


def test_a_cell_killed_beside_another_is_one_failed_row_and_the_rest_run(tmp_path, tiny_spec):
    from dataclasses import replace

    from adaptsam.bench.runner import run_bench

    spec = replace(tiny_spec, adapters=(AdapterChoice("frozen"),), jobs=2)
    summary = run_bench(spec, tmp_path, executor=_DyingExecutor(), progress=False, report=False, timing=False)
    with ResultStore(tmp_path / "results.sqlite") as store:
        rows = store.rows()
    assert summary.statuses == {"done": 2, "failed": 2}
    assert all(r.status == "failed" and "SIGKILL" in r.error for r in rows if r.cell.policy == "upsample")
    assert all(r.status == "done" for r in rows if r.cell.policy == "native")
