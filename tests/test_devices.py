"""Models, adapters, training, evaluation, the cache, predict and export on every available device.

Each test is parametrised over ``cpu`` (always) and ``cuda`` (skipped, with the reason, when
``torch.cuda.is_available()`` is False). The CPU-only checks below pretend CUDA exists where that is what
would go wrong: with ``--device cpu`` nothing may touch CUDA's allocator, and DDP picks gloo for a CPU model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import adaptsam
from adaptsam.cli import main
from adaptsam.data import LowResDataset, open_dataset
from adaptsam.devices import resolve_device, resolve_precision
from adaptsam.errors import ConfigError

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="torch.cuda.is_available() is False on this machine")),
]


def _model(device: str, adapter: str = "lora", **kwargs):
    return adaptsam.create_model("lite_medsam_test", pretrained=False, policy="native", resolution=64,
                                 adapter=adapter, device=device, **kwargs)


def _on(model, device: str) -> bool:
    return {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()} == {device}


def _data(split: str = "train", n: int = 4) -> LowResDataset:
    return LowResDataset(open_dataset("synthetic", split, n=n, size=64), 64, train=False)


@pytest.mark.parametrize("device", DEVICES)
def test_model_builds_on_the_device_with_the_same_weights(device):
    model = _model(device)
    assert _on(model, device) and model.device.type == device
    reference = _model("cpu")
    cpu = {k: v.cpu() for k, v in model.state_dict().items()}
    assert all(torch.equal(cpu[k], v) for k, v in reference.state_dict().items())  # built on CPU, then moved
    out = model(torch.rand(2, 3, 64, 64, device=device), boxes=torch.tensor([[4.0, 4, 40, 40]] * 2, device=device))
    assert out.logits.device.type == device and out.logits.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("device", DEVICES)
def test_adapter_apply_merge_save_load_on_the_device(device, tmp_path):
    model = _model(device).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    images = torch.rand(1, 3, 64, 64, device=device)
    boxes = torch.tensor([[8.0, 8, 48, 48]], device=device)
    with torch.no_grad():
        before = model(images, boxes=boxes).logits
        adaptsam.merge_adapter(model)
        merged = model(images, boxes=boxes).logits
        adaptsam.unmerge_adapter(model)
    assert torch.allclose(before, merged, atol=1e-4)
    path = adaptsam.save_adapter(model, tmp_path / "a.safetensors")
    loaded = adaptsam.load_adapter(path, device=device).eval()
    assert _on(loaded, device)
    with torch.no_grad():
        assert torch.allclose(loaded(images, boxes=boxes).logits, before, atol=1e-5)
    on_cpu = adaptsam.load_adapter(path, device="cpu")
    assert _on(on_cpu, "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_one_training_step_and_evaluation_on_the_device(device):
    from adaptsam.engine.evaluate import evaluate
    from adaptsam.engine.train import TrainConfig, fit

    model = _model(device)
    result = fit(model, _data(), TrainConfig(steps=1, batch_size=2, progress=False, augment=False, cache=False))
    assert result.steps == 1 and np.isfinite(result.final_loss) and _on(model, device)
    scores = evaluate(model, _data("test"), progress=False, precision="fp32")
    assert 0.0 <= scores.mean_dice <= 1.0
    bf16 = evaluate(model, _data("test"), progress=False, precision="bf16")  # autocast on this device runs
    assert abs(bf16.mean_dice - scores.mean_dice) < 0.05
    assert resolve_precision(None, model.device) == ("bf16" if device == "cuda" else "fp32")


@pytest.mark.parametrize("device", DEVICES)
def test_the_embedding_cache_stores_cpu_tensors_and_serves_the_device(device, tmp_path):
    from adaptsam.engine.cache import EmbeddingCache

    model = _model(device, adapter="decoder").eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    served = EmbeddingCache(model, directory=tmp_path).embeddings(images, ["a", "b"])
    assert served.device.type == device
    stored = [torch.load(p, weights_only=True) for p in sorted(tmp_path.glob("*.pt"))]
    assert len(stored) == 2 and all(t.device.type == "cpu" for t in stored)
    again = EmbeddingCache(model, directory=tmp_path)  # from disk, moved on load
    assert torch.allclose(again.embeddings(images, ["a", "b"]), served) and again.hits == 2


@pytest.mark.parametrize("device", DEVICES)
def test_predict_and_onnx_export_from_a_model_on_the_device(device, tmp_path):
    pytest.importorskip("onnxruntime")
    from adaptsam.export import ExportConfig, export_onnx
    from adaptsam.predict import ImagePrompts, PredictConfig, Predictor, load_model

    path = adaptsam.save_adapter(_model("cpu"), tmp_path / "a.safetensors")
    model = load_model(path, device=device)
    assert _on(model, device)
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    prompts = ImagePrompts(boxes=np.array([[5.0, 5, 60, 50]]))
    (prediction,) = Predictor(model, PredictConfig(progress=False)).predict([image], [prompts])
    assert prediction.masks.shape == (1, 70, 90)
    report = export_onnx(model, tmp_path / "a.onnx", ExportConfig(device=device))
    assert report.max_abs_diff_logits < 1e-3


def test_device_names_are_checked_with_one_line_that_says_what_is_accepted(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cpu:1", "cuda:x", 3):
        with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"'cuda:0' requested but torch.cuda.is_available\(\) is False"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="only 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cli_refuses_cuda_without_a_gpu_before_building_anything(tmp_path, capsys):
    code = main(["train", "--backbone", "lite_medsam_test", "--random-init", "--data", "synthetic", "--device",
                 "cuda", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "torch.cuda.is_available() is False" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--backbone", "lite_medsam_test", "--data", "synthetic", "--device", "tpu",
                 "--out", str(tmp_path / "e")]) == 2
    assert "expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert main(["bench", "--device", "cuda", "--dry-run", "--out", str(tmp_path / "b")]) == 2


def _pretend_cuda_exists_but_forbid_its_allocator(monkeypatch) -> None:
    from adaptsam.bench import measure

    def forbidden(name: str):
        def call(*args, **kwargs):
            raise AssertionError(f"CUDA's allocator was queried for a CPU model (torch.cuda.{name})")
        return call  # one function per name: torch._dynamo refuses one object under several torch names

    adaptsam.registry.backbones.get("lite_medsam_test")  # imported before torch.cuda is patched
    # torch's own optimiser asks the (pretend) GPU whether a CUDA graph is being captured; that is torch's
    # check, not adaptsam's, so it is switched off here
    monkeypatch.setattr(torch.optim.Optimizer, "_accelerator_graph_capture_health_check", lambda self: None,
                        raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "pretend GPU")
    monkeypatch.setattr(measure, "gpu_environment", lambda: {})
    for name in ("memory_allocated", "max_memory_allocated", "reset_peak_memory_stats", "synchronize",
                 "memory_reserved", "empty_cache", "set_device"):
        monkeypatch.setattr(torch.cuda, name, forbidden(name))
    measure.environment.cache_clear()


def test_with_device_cpu_nothing_queries_cudas_allocator_and_peak_memory_follows_the_model(monkeypatch, tmp_path):
    from adaptsam.bench import measure
    from adaptsam.bench.cell import run_cell
    from adaptsam.bench.spec import Cell

    _pretend_cuda_exists_but_forbid_its_allocator(monkeypatch)
    try:
        cell = Cell(backbone="lite_medsam_test", adapter="lora", policy="native", resolution=64, dataset="synthetic",
                    steps=1, batch_size=2, eval_limit=2, throughput_batch=1, pretrained=False)
        result = run_cell(cell, tmp_path, device="cpu")
        assert result.status == "done", result.error
        assert result.metrics["device"] == "cpu" and result.metrics["precision"] == "fp32"
        assert "cuda" not in result.metrics["memory_method"]
        model = _model("cpu")
        with measure.PeakMemory(model.device) as peak:
            model(torch.rand(1, 3, 64, 64), boxes=torch.tensor([[4.0, 4, 40, 40]]))
        assert peak.megabytes >= 0 and "cuda" not in peak.method
        with pytest.raises(AssertionError, match="allocator was queried"), \
                measure.PeakMemory(torch.device("cuda", 0)):  # a CUDA model's peak does ask it
            pass
    finally:
        measure.environment.cache_clear()


def test_ddp_uses_nccl_only_for_a_cuda_model_each_rank_on_its_local_gpu(monkeypatch):
    import torch.distributed as dist

    from adaptsam.engine import distributed

    calls: dict[str, object] = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.__setitem__("backend", backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    _pretend_cuda_exists_but_forbid_its_allocator(monkeypatch)  # set_device raises: a CPU run must not call it
    context = distributed.init_distributed("cpu")
    assert calls["backend"] == "gloo" and context.device == "cpu"
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.__setitem__("gpu", index))
    context = distributed.init_distributed("cuda")
    assert calls == {"backend": "nccl", "gpu": 1} and context.device == "cuda:1"


def test_bench_device_is_how_a_cell_runs_not_part_of_its_key():
    from dataclasses import replace

    from adaptsam.bench.executors import RayExecutor, make_executor
    from adaptsam.bench.spec import preset_spec

    spec = preset_spec("quick")
    on_cpu = replace(spec, device="cpu", precision="fp32")
    assert [c.key for c in spec.cells()] == [c.key for c in on_cpu.cells()]
    assert on_cpu.cells()[0].experiment("cpu", "fp32").device == "cpu"
    with pytest.raises(ConfigError, match="device"):
        replace(spec, device="gpu")
    assert make_executor("ray", gpus_per_cell=0.25).gpus_per_cell == 0.25
    with pytest.raises(ConfigError, match="gpus_per_cell"):
        RayExecutor(gpus_per_cell=-1)


def test_metrics_json_records_device_and_precision(tmp_path):
    code = main(["train", "--backbone", "lite_medsam_test", "--random-init", "--adapter", "lora", "--policy",
                 "native", "-R", "64", "--data", "synthetic", "--steps", "1", "--batch-size", "2", "--limit", "2",
                 "--no-progress", "--device", "cpu", "--no-bf16", "--out", str(tmp_path / "run")])
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["device"] == "cpu" and metrics["precision"] == "fp32" and metrics["train_precision"] == "fp32"
    assert metrics["experiment"]["device"] == "cpu" and metrics["experiment"]["precision"] == "fp32"


@pytest.mark.parametrize("device", DEVICES)
def test_ncut_encodes_on_the_device_and_perf_times_there(device, monkeypatch):
    from adaptsam.bench import perf
    from adaptsam.diagnostics.ncut import Column, build_model

    assert _on(build_model("lite_medsam_test", Column("native", 64), device=device), device)
    monkeypatch.setattr(perf, "_RUN_DEVICE", [device])  # what PerfRun.run sets from PerfConfig.device
    model = perf.reference_model("lite_medsam_test", "native", 64)
    assert _on(model, device) and perf.forward_fn(model, 1)().logits.device.type == device
    perf._reference_model.cache_clear()
