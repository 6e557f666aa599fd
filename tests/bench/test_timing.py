"""The timing phase: one figure per inference graph, per-round ratios to a reference, stored per timing run."""

from __future__ import annotations

import pytest
import torch

from adaptsam.api import create_model
from adaptsam.bench.store import ResultStore
from adaptsam.bench.timing import CellToTime, GraphTimes, TimingOutcome, cell_speeds, reference_graphs
from adaptsam.inference import for_inference, graph_signature


def _deployed(adapter: str, policy: str = "native", cfg: dict | None = None, **kwargs) -> torch.nn.Module:
    model = create_model("lite_medsam_test", pretrained=False, policy=policy, resolution=32, adapter=adapter,
                         adapter_cfg=cfg)
    if adapter == "lora":
        with torch.no_grad():  # a trained-looking update: merging must still leave the frozen graph
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 1e-2)
    return for_inference(model, **kwargs)


def test_decoder_tuning_and_merged_lora_run_the_frozen_graph():
    frozen = graph_signature(_deployed("frozen"), 4)
    assert graph_signature(_deployed("decoder"), 4) == frozen
    assert graph_signature(_deployed("lora", cfg={"train_decoder": True}), 4) == frozen
    assert graph_signature(_deployed("sam_adapter"), 4) != frozen  # its prompt branch runs at inference
    assert graph_signature(_deployed("frozen", policy="upsample"), 4) != frozen
    assert graph_signature(_deployed("frozen"), 2) != frozen  # the batch is part of what is timed


def test_unmerged_lora_is_its_own_graph():
    model = create_model("lite_medsam_test", pretrained=False, policy="native", resolution=32, adapter="lora")
    frozen = create_model("lite_medsam_test", pretrained=False, policy="native", resolution=32, adapter="frozen")
    assert graph_signature(model, 4) != graph_signature(frozen, 4)


def _cell(key: str, adapter: str, policy: str, resolution: int = 64) -> CellToTime:
    return CellToTime(key=key, label=key, backbone="b", adapter=adapter, policy=policy, resolution=resolution,
                      batch=4, adapter_file="")


def test_ratios_are_taken_within_each_round_against_the_zero_shot_upsample_graph():
    cells = [_cell("f-nat", "frozen", "native"), _cell("d-nat", "decoder", "native"),
             _cell("f-up", "frozen", "upsample"), _cell("d-up", "decoder", "upsample"),
             _cell("f-128", "frozen", "native", 128)]
    # round 2 is a slow spell that hits both graphs alike: the paired ratio stays 10×
    graphs = {"native": GraphTimes("native", "", 4, [0.1, 0.3, 0.1], [0.4, 1.2, 0.4]),
              "upsample": GraphTimes("upsample", "", 4, [1.0, 3.0, 1.0], [4.0, 12.0, 4.0]),
              "n128": GraphTimes("n128", "", 4, [0.5, 0.5, 0.5], [2.0, 2.0, 2.0])}
    outcome = TimingOutcome(graphs, {"f-nat": "native", "d-nat": "native", "f-up": "upsample", "d-up": "upsample",
                                     "f-128": "n128"}, {})
    refs = reference_graphs(cells, outcome)
    assert refs["d-nat"][0] == "upsample" and "upsample R64 (frozen)" in refs["d-nat"][1]
    assert "slowest graph" in refs["f-128"][1]  # no upsample cell at R=128: the slowest graph of the bench
    speeds = cell_speeds(cells, outcome)
    assert speeds["f-nat"]["images_per_s"] == speeds["d-nat"]["images_per_s"] == pytest.approx(10.0)
    assert speeds["d-nat"]["speed_ratio"] == pytest.approx(10.0)
    assert speeds["d-nat"]["speed_ratio_min"] == speeds["d-nat"]["speed_ratio_max"] == pytest.approx(10.0)
    assert speeds["f-up"]["speed_ratio"] == pytest.approx(1.0)
    assert speeds["d-nat"]["rounds"] == 3


def test_report_reads_only_the_latest_complete_timing_run(tmp_path, tiny_spec):
    cells = tiny_spec.cells()
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.register(cells)
        first = store.start_timing_run({"device": "cpu"}, {"rounds": 2})
        store.finish_timing_run(first, {cells[0].key: {"images_per_s": 1.0}})
        store.start_timing_run({"device": "cpu"}, {"rounds": 2})  # killed before it finished
        assert store.latest_timing_run()["run_id"] == first
        assert store.rows([cells[0].key])[0].speed == {"images_per_s": 1.0}
        third = store.start_timing_run({"device": "cpu"}, {"rounds": 2})
        store.finish_timing_run(third, {cells[1].key: {"images_per_s": 2.0}})
        rows = {r.key: r for r in store.rows()}
    assert rows[cells[0].key].speed == {}  # never a figure of another run in the same table
    assert rows[cells[1].key].speed == {"images_per_s": 2.0}


def _timed_cell(tmp_path) -> CellToTime:
    from adaptsam.adapters.io import save_adapter

    model = create_model("lite_medsam_test", pretrained=False, policy="native", resolution=32, adapter="decoder")
    path = save_adapter(model, tmp_path / "decoder.safetensors")
    return CellToTime(key="k", label="k", backbone="lite_medsam_test", adapter="decoder", policy="native",
                      resolution=32, batch=1, adapter_file=str(path))


def test_compile_times_each_graph_compiled_in_the_same_rounds(tmp_path, monkeypatch):
    from adaptsam.bench.timing import TimingConfig, compiled_key, time_graphs

    eager_backend = torch.compile
    compiled = []

    def quick_compile(model, **kwargs):  # the eager backend: the same path without minutes of C++ compilation
        compiled.append(model)
        return eager_backend(model, backend="eager")

    monkeypatch.setattr(torch, "compile", quick_compile)
    cell = _timed_cell(tmp_path)
    outcome = time_graphs([cell], TimingConfig(rounds=2, min_pass_s=0, compile=True))
    signature = outcome.cell_graph["k"]
    assert len(compiled) == 1 and not outcome.compile_failed
    assert len(outcome.graphs[compiled_key(signature)].per_image_s) == 2
    speed = cell_speeds([cell], outcome)["k"]
    assert speed["images_per_s_compiled"] > 0 and speed["compile_speedup"] > 0
    plain = time_graphs([cell], TimingConfig(rounds=1, min_pass_s=0))
    assert set(plain.graphs) == {signature} and "images_per_s_compiled" not in cell_speeds([cell], plain)["k"]


def test_a_graph_that_does_not_compile_keeps_its_eager_figure(tmp_path, monkeypatch):
    from adaptsam.bench.timing import TimingConfig, time_graphs

    def broken_compile(model, **kwargs):
        raise RuntimeError("no C++ compiler\nfound")

    monkeypatch.setattr(torch, "compile", broken_compile)
    cell = _timed_cell(tmp_path)
    outcome = time_graphs([cell], TimingConfig(rounds=1, min_pass_s=0, compile=True))
    speed = cell_speeds([cell], outcome)["k"]
    assert speed["images_per_s"] > 0 and speed["compile_error"] == "RuntimeError: no C++ compiler found"


def test_retime_runs_a_new_timing_phase_and_trains_nothing(tmp_path, tiny_spec):
    from dataclasses import replace

    from adaptsam.bench.runner import STORE_NAME, run_bench
    from adaptsam.bench.spec import AdapterChoice

    spec = replace(tiny_spec, adapters=(AdapterChoice("frozen"),), resolutions=(32,))
    first = run_bench(spec, tmp_path, progress=False, report=False)
    assert first.ran == first.timed == 2
    assert run_bench(spec, tmp_path, progress=False, report=False).timed == 0  # covered: not timed again
    again = run_bench(spec, tmp_path, progress=False, report=False, retime=True)
    assert again.ran == 0 and again.timed == 2
    with ResultStore(tmp_path / STORE_NAME) as store:
        complete = store._conn.execute("SELECT COUNT(*) FROM timing_runs WHERE status='complete'").fetchone()[0]
        latest = store.latest_timing_run()["run_id"]
        assert complete == 2 and all(r.speed == store.speeds(latest)[r.key] for r in store.rows())
