"""The bench end to end on a tiny grid: resumable after SIGKILL, same rows through Ray, reproducible."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from adaptsam.bench.cell import run_cell
from adaptsam.bench.executors import LocalExecutor
from adaptsam.bench.runner import STORE_NAME, run_bench
from adaptsam.bench.spec import Cell
from adaptsam.bench.store import ResultStore
from tests.bench.conftest import TINY_FLAGS


def _done_count(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_bench_resumes_and_runs_each_cell_once(tmp_path, tiny_spec):
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "adaptsam", "bench", *TINY_FLAGS, "--out", str(out), "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while _done_count(out / STORE_NAME) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_done = _done_count(out / STORE_NAME)
    assert 2 <= killed_done < 8, "the bench should have been killed half-way"

    summary = run_bench(tiny_spec, out, progress=False, report=False)
    assert summary.statuses == {"done": 8} and summary.ran == 8 - killed_done
    with ResultStore(out / STORE_NAME) as store:
        rows = store.rows()
    expected = {cell.key for cell in tiny_spec.cells()}
    assert {r.key for r in rows} == expected and len(rows) == 8  # one row per cell, same keys as a clean run
    for row in rows:
        assert row.status == "done" and "mean_dice" in row.metrics and "images_per_s" in row.speed
        assert row.timings["total_s"] >= row.timings["train_s"]
    assert sum(r.attempts for r in rows) in (8, 9)  # the cell running at the kill (if any) ran once more


def _timing_run_started(path) -> bool:
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM timing_runs WHERE status='running'").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def test_a_bench_killed_in_its_timing_phase_resumes_without_training_again(tmp_path):
    out = tmp_path / "bench"
    flags = [*TINY_FLAGS]
    flags[flags.index("--timing-rounds") + 1] = "1000"  # a timing phase long enough to be killed in
    command = [sys.executable, "-m", "adaptsam", "bench", *flags, "--out", str(out), "--no-report"]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not _timing_run_started(out / STORE_NAME) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the bench ended before its timing phase could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    with ResultStore(out / STORE_NAME) as store:
        trained = {r.key: r.metrics["mean_dice"] for r in store.rows() if r.status == "done"}
    assert len(trained) == 6  # every cell of the grid (the quick preset drops LoRA under upsample) survives

    from adaptsam.cli import main

    assert main(["bench", *TINY_FLAGS, "--out", str(out), "--no-report"]) == 0  # resume, 2 timing rounds
    with ResultStore(out / STORE_NAME) as store:
        rows = store.rows()
        runs = dict(store._conn.execute("SELECT status, COUNT(*) FROM timing_runs GROUP BY status"))
    assert {r.key: r.metrics["mean_dice"] for r in rows} == trained
    assert all(r.attempts == 1 and "images_per_s" in r.speed for r in rows)  # nothing trained again, all timed
    assert runs == {"abandoned": 1, "complete": 1}  # the killed run is never read as a result


@pytest.mark.extended  # 80 s on 2 cores, mostly Ray starting: tox -e extended
def test_ray_executor_gives_the_same_rows(tmp_path, tiny_spec):
    pytest.importorskip("ray")
    from adaptsam.bench.executors import RayExecutor

    local = run_bench(tiny_spec, tmp_path / "local", progress=False, report=False)
    remote = run_bench(tiny_spec, tmp_path / "ray", executor=RayExecutor(num_cpus=2), progress=False, report=False)
    assert local.statuses == remote.statuses == {"done": 8}
    with ResultStore(tmp_path / "local" / STORE_NAME) as a, ResultStore(tmp_path / "ray" / STORE_NAME) as b:
        rows_a = {r.key: r for r in a.rows()}
        rows_b = {r.key: r for r in b.rows()}
    assert set(rows_a) == set(rows_b)
    for key in rows_a:  # same training and evaluation, whichever process ran it
        assert rows_a[key].metrics["mean_dice"] == pytest.approx(rows_b[key].metrics["mean_dice"], abs=1e-6)


def test_same_seed_twice_gives_identical_dice(tmp_path, tiny_spec):
    cell = next(c for c in tiny_spec.cells() if c.adapter == "lora" and c.policy == "native")
    first, second = run_cell(cell, tmp_path), run_cell(cell, tmp_path)
    assert first.status == second.status == "done"
    assert abs(first.metrics["mean_dice"] - second.metrics["mean_dice"]) < 1e-6


def test_failures_and_incompatibilities_are_rows_not_crashes(tmp_path):
    bad_data = Cell(backbone="lite_medsam_test", adapter="frozen", policy="native", resolution=64,
                    dataset=str(tmp_path / "no-such-folder"), pretrained=False, eval_limit=2)
    result = run_cell(bad_data, tmp_path)
    assert result.status == "failed" and "no-such-folder" in result.error
    wrong_r = Cell(backbone="lite_medsam_test", adapter="frozen", policy="native", resolution=66,
                   dataset="synthetic", pretrained=False)
    assert run_cell(wrong_r, tmp_path).status == "skipped"
    prompt_free = Cell(backbone="lite_medsam_test", adapter="class_prompt_lora", policy="native", resolution=64,
                       dataset="synthetic", pretrained=False)
    skipped = run_cell(prompt_free, tmp_path)
    assert skipped.status == "skipped" and "without prompts" in skipped.error


def test_prompt_free_bench_runs_class_prompts(tmp_path):
    cell = Cell(backbone="lite_medsam_test", adapter="class_prompt_lora", policy="native", resolution=32,
                dataset="synthetic_2class", pretrained=False, prompt="none", shots=2, steps=2, eval_limit=2,
                throughput_batch=1)
    result = run_cell(cell, tmp_path)
    assert result.status == "done", result.error
    assert set(result.metrics["per_class"]) <= {"disc", "square"}


def test_store_rows_survive_as_json(tmp_path, tiny_spec):
    with ResultStore(tmp_path / STORE_NAME) as store:
        assert store.register(tiny_spec.cells()) == 8
        assert store.register(tiny_spec.cells()) == 0
        store.set_meta("spec", tiny_spec.to_dict())
        assert store.meta("spec")["name"] == "tiny"
        assert json.loads(json.dumps(store.meta("spec")))["adapters"][1]["name"] == "lora"


def test_wandb_logging_works_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from adaptsam.bench.tracking import WandbCellLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cell = Cell(backbone="lite_medsam_test", adapter="frozen", policy="native", resolution=32, dataset="synthetic",
                pretrained=False, eval_limit=2, throughput_batch=1)
    result = run_cell(cell, tmp_path)
    WandbCellLogger(group="test")(cell, result)
    assert list((tmp_path / "wandb").glob("offline-run-*")), "no offline run written"


def test_adapters_all_includes_installed_plugins(tmp_path, tiny_spec):
    from adaptsam import registry
    from adaptsam.bench.spec import spec_from_mapping

    plugins = sorted(e.name for e in registry.adapters.entries() if e.origin != "adaptsam" and not e.broken)
    if not plugins:
        pytest.skip("no adapter plugins installed (pip install ./plugins/*)")
    spec = spec_from_mapping({"adapters": "all", "policies": "native", "resolutions": [32]}, tiny_spec)
    assert {c.adapter for c in spec.cells()} == set(registry.adapters.names(for_tests=False))
    # the plugins' cells run (the built-ins are every contract test's business; running them too cost 40 s), in
    # this process: a worker per cell imported PEFT anew for each of its tuners (isolation: test_isolation.py)
    spec = spec_from_mapping({"adapters": plugins}, spec)
    run_bench(spec, tmp_path, executor=LocalExecutor(isolate=False), progress=False, report=False,
              timing=False)  # timing: tests/bench/test_timing.py
    with ResultStore(tmp_path / STORE_NAME) as store:
        rows = {r.config["adapter"]: r for r in store.rows()}
    assert set(rows) == set(plugins)
    for name in plugins:
        assert rows[name].status == "done", (name, rows[name].error)
