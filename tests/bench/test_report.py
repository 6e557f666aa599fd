"""The report: CSV columns, ranked tables with the zero-shot reference and untrained marks, readable PNGs."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from adaptsam.bench.report import CSV_COLUMNS, write_report
from adaptsam.bench.runner import run_bench
from adaptsam.bench.stats import (
    bootstrap_interval,
    paired_difference,
    paired_seed_image_difference,
    pareto_front,
    seed_interval,
    within_noise,
)
from adaptsam.cli import main


def test_report_files(tmp_path, tiny_spec):
    run_bench(tiny_spec, tmp_path, progress=False, report=False)
    assert main(["report", str(tmp_path)]) == 0
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 8
    text = (tmp_path / "report.md").read_text()
    assert "## synthetic" in text and "reference" in text and "lite_medsam_test†" in text
    assert "× vs reference" in text and "1.00× (1.00–1.00)" in text  # the upsample rows are their own reference
    assert "interleaved rounds" in text and "Memory: peak bytes of live tensors" in text
    for name in ("dice_vs_speed", "dice_vs_params", "dice_vs_resolution"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"({name}.png)" in text


def test_report_without_results_explains(tmp_path):
    with pytest.raises(Exception, match="run adaptsam bench"):
        write_report(tmp_path)


def test_statistics():
    mean, low, high = seed_interval([0.80, 0.82, 0.81])
    assert low < mean < high and mean == pytest.approx(0.81)
    mean, low, high = bootstrap_interval(np.linspace(0.5, 1.0, 50))
    assert low < mean < high
    same = paired_difference({"a": 0.5, "b": 0.6}, {"a": 0.5, "b": 0.6})
    assert within_noise(same)
    better = paired_difference({str(i): 0.9 for i in range(30)}, {str(i): 0.5 + 0.01 * (i % 3) for i in range(30)})
    assert not within_noise(better)
    assert pareto_front([(1, 0.9), (10, 0.8), (5, 0.7), (20, 0.5)]) == [0, 1, 3]


def test_seed_and_image_bootstrap():
    a = {str(i): 0.6 + 0.01 * (i % 5) for i in range(30)}
    b = {str(i): 0.55 + 0.02 * (i % 3) for i in range(30)}
    one_seed = paired_seed_image_difference([a], [b])
    assert one_seed == pytest.approx(paired_difference(a, b), abs=0.01)  # one seed: the paired image bootstrap
    steady = [{k: v + 0.001 * s for k, v in a.items()} for s in range(3)]
    shaky = [{k: v + 0.08 * s for k, v in a.items()} for s in range(3)]  # same images, seeds far apart
    assert not within_noise(paired_seed_image_difference(steady, [b]))
    wide, narrow = paired_seed_image_difference(shaky, [b]), paired_seed_image_difference(steady, [b])
    assert wide[2] - wide[1] > 3 * (narrow[2] - narrow[1])  # seed spread widens the interval


def test_compiled_table_has_one_line_per_graph_and_says_why_one_did_not_compile():
    from types import SimpleNamespace

    from adaptsam.bench.report import compiled_table

    base = {"graph": "g1", "graph_description": "lite_medsam/native/R64/frozen", "images_per_s": 10.0,
            "images_per_s_compiled": 15.0, "compile_speedup": 1.5}
    rows = [SimpleNamespace(speed=base), SimpleNamespace(speed=dict(base)),  # two cells, one graph
            SimpleNamespace(speed={"graph": "g2", "graph_description": "lite_medsam/upsample/R64/frozen",
                                   "images_per_s": 1.0, "compile_error": "RuntimeError: no compiler"}),
            SimpleNamespace(speed={})]
    lines = compiled_table(rows)
    assert lines[0] == "## torch.compile"
    assert "| lite_medsam/native/R64/frozen | 10.00 | 15.00 | 1.50× |" in lines
    assert "| lite_medsam/upsample/R64/frozen | 1.00 | n/a (RuntimeError: no compiler) | n/a |" in lines
    assert len([line for line in lines if line.startswith("| lite_medsam")]) == 2
    assert compiled_table([SimpleNamespace(speed={"graph": "g", "images_per_s": 1.0})]) == []


def test_a_report_shows_the_latest_grid_only_and_says_what_else_is_kept(tmp_path, tiny_spec):
    """Rows of an earlier grid (here another budget) would otherwise join this grid's as extra seeds."""
    from dataclasses import replace

    from adaptsam.bench.runner import STORE_NAME, cells_to_time
    from adaptsam.bench.spec import AdapterChoice
    from adaptsam.bench.store import ResultStore

    first = replace(tiny_spec, adapters=(AdapterChoice("lora"),), policies=("native",), resolutions=(32,))
    second = replace(first, steps=3)
    assert first.cells()[0].key != second.cells()[0].key
    for spec in (first, second):
        run_bench(spec, tmp_path, progress=False, report=False, timing=False)
    write_report(tmp_path)
    with open(tmp_path / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["key"] for r in rows] == [second.cells()[0].key]
    assert "keeps 1 result(s) of earlier grids" in (tmp_path / "report.md").read_text()
    with ResultStore(tmp_path / STORE_NAME) as store:
        assert len(store.rows()) == 2  # nothing is lost
        assert [c.key for c in cells_to_time(store)] == [second.cells()[0].key]
