"""ONNX export of an adapted model at its resolution R, verified with onnxruntime right after writing.

Graph layout: **one graph** (image + boxes → logits + IoU), not an encoder/decoder pair. At the low
resolutions adaptsam targets the encoder costs milliseconds to a few hundred, so encoding once and
prompting many times (SAM's reason for two graphs) saves little, while one file is one session, one
verification and one thing to ship. The graph still runs the encoder once per image and the decoder once
per box, for any number of boxes.

Inputs and outputs (promptable models)::

    image   float32 [B, 3, R, R]   RGB in [0, 1], already degraded to longest side R and padded bottom/right
                                   (adaptsam.data.degrade); the backbone's own normalisation is in the graph
    boxes   float32 [B, K, 4]      x0, y0, x1, y1 in pixel indices of the R×R image (x = column, y = row; a
                                   box holds its extreme pixels, as adaptsam.data.box_from_mask); K is dynamic
    logits  float32 [B, K, R, R]   mask logits at R (foreground where > 0); resize logits, not masks, to go
                                   back to the original size (adaptsam.postprocess.upsample_logits)
    iou     float32 [B, K]         the decoder's predicted IoU of each mask

Prompt-free models (``model.head``: class prompts, PerSAM, prototypes) take ``image`` only and return
``logits`` [B, C, R, R], ``iou`` [B, C] and ``labels`` int64 [B, R, R] (class index per pixel, the head's
background value where no class is likely).
B is fixed at export time (default 1): TinyViT's patch merging reshapes with ``len(x)``, which the tracer
records as a constant. The adaptsam metadata (backbone, adapter, policy, R, these conventions) is stored in
the file's ``metadata_props``.

How it is exported, and why:

* The adapter is merged into the base weights first where it supports it (``adaptsam.merge_adapter``, on a
  copy: the caller's model is untouched), so LoRA costs nothing at inference; other adapters are traced as
  they are. The verification compares with the caller's unmerged model, so it covers the merge too.
* torch's TorchScript-based exporter (``dynamo=False``), opset 17. The dynamo exporter needs ``onnxscript``
  (not in the ``export`` extra) and ``torch.export``'s symbolic shapes, which TinyViT's Python-level shape
  code defeats. The tracer is deterministic: the same model gives the same bytes.
* TinyViT caches its attention biases as a buffer ``ab`` in eval mode. The copy is switched to eval mode
  *after* merging and loading, so the cached biases are fresh; in the graph they are constants.
* SAM's prompt encoder embeds points with boolean-mask indexing on the labels (data-dependent); only boxes
  are graph inputs, whose embedding uses static slices. The mask decoder pairs one image embedding with
  each prompt via ``repeat_interleave(K)``: tracing with K >= 2 records K as dynamic (with K = 1 the
  tracer would take the no-repeat branch and bake it in).
* ``sam_adapter`` does not export: its FFT high-pass uses complex tensors, which ONNX lacks (an exact real
  form exists: the centred low-pass is separable, ``Re(P_h X P_wᵀ)`` with fixed R×R matrices).
* ``onnx`` and ``onnxruntime`` (the ``export`` extra) are imported only here, with a clear message when
  missing.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adaptsam.errors import AdaptsamError, IncompatibleError
from adaptsam.model import SamModel

DEFAULT_OPSET = 17
TRACE_BOXES = 2  # >= 2: see the module docstring


class ExportError(AdaptsamError, RuntimeError):
    """The exported graph does not reproduce the torch model (or could not be checked)."""


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`export_onnx`.

    Args:
        opset: ONNX opset (17 has LayerNormalization; older ones decompose it).
        batch_size: images per run, fixed in the graph.
        merge: merge the adapter into the base weights first, where the adapter supports it.
        verify: run the file with onnxruntime and compare with the torch model.
        tolerance: largest acceptable absolute difference of logits (and IoU).
        seed: seed of the verification inputs.
        device: where the inference copy is traced (``cpu``, ``cuda[:N]``; ``auto`` = CUDA when available);
            the graph is the same, verification always runs on onnxruntime's CPU provider against a CPU copy.
    """

    opset: int = DEFAULT_OPSET
    batch_size: int = 1
    merge: bool = True
    verify: bool = True
    tolerance: float = 1e-3
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        from adaptsam.devices import check_device_option

        check_device_option(self.device)
        if not isinstance(self.opset, int) or not 14 <= self.opset <= 20:
            raise ValueError(f"Expected opset between 14 and 20 (17 recommended), got {self.opset!r}.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1, got {self.batch_size!r}.")
        if not self.tolerance > 0:
            raise ValueError(f"Expected tolerance > 0, got {self.tolerance!r}.")


@dataclass(frozen=True)
class ExportReport:
    """What was written and how well it matches: max |onnx − torch| over the verification runs."""

    path: Path
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    merged: bool
    max_abs_diff_logits: float | None
    max_abs_diff_iou: float | None
    seconds: float


class _PromptedGraph(nn.Module):
    def __init__(self, model: SamModel):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(image, boxes=boxes)
        return out.logits, out.iou


class _ClassGraph(nn.Module):
    def __init__(self, model: SamModel):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(image)
        return out.logits, out.iou, self.model.head.labels(out.logits)


def require_onnx() -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or an error saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise IncompatibleError(f"ONNX export needs the 'export' extra ({exc.name} is missing): "
                                f"pip install 'adaptsam[export]' (onnx, onnxruntime).") from exc
    return onnx, onnxruntime


def example_inputs(model: SamModel, batch: int, boxes: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded inputs: smooth random images (so min-max normalisation sees a real range) and boxes inside R."""
    generator = torch.Generator().manual_seed(seed)
    r = model.resolution
    coarse = torch.rand(batch, 3, max(2, r // 8), max(2, r // 8), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(r, r), mode="bilinear", align_corners=False)
    inputs = {"image": image}
    if model.uses_prompts:
        low = torch.rand(batch, boxes, 2, generator=generator) * (r * 0.5)
        size = torch.rand(batch, boxes, 2, generator=generator) * (r * 0.45) + 4
        inputs["boxes"] = torch.cat([low, (low + size).clamp(max=r - 1)], dim=-1)
    return inputs


def graph_signature(model: SamModel, batch: int) -> tuple[dict[str, list[int | str]], dict[str, list[int | str]]]:
    """Input and output names with shapes (``K`` is the dynamic number of boxes)."""
    r = model.resolution
    if model.uses_prompts:
        return ({"image": [batch, 3, r, r], "boxes": [batch, "K", 4]},
                {"logits": [batch, "K", r, r], "iou": [batch, "K"]})
    c = len(model.head.class_ids)
    return {"image": [batch, 3, r, r]}, {"logits": [batch, c, r, r], "iou": [batch, c], "labels": [batch, r, r]}


def _inference_copy(model: SamModel, merge: bool, device: str = "cpu") -> tuple[SamModel, bool]:
    from adaptsam.devices import resolve_device

    twin = copy.deepcopy(model).to(resolve_device(device))
    adapter = getattr(twin, "adapter", None)
    merged = False
    if merge and adapter is not None and getattr(adapter, "supports_merge", False):
        try:
            adapter.merge(twin)
            merged = True
        except IncompatibleError:  # e.g. class prompts without LoRA targets: nothing to merge
            merged = False
    twin.requires_grad_(False)
    twin.eval()  # after merging and loading: TinyViT recomputes its cached attention biases here
    twin.refresh_cached_buffers()
    return twin, merged


def export_onnx(model: SamModel, path: str | os.PathLike[str], config: ExportConfig | None = None) -> ExportReport:
    """Write ``model`` (adapter merged where possible) as one ONNX graph at its resolution and verify it."""
    onnx, _ = require_onnx()
    config = config or ExportConfig()
    if model.policy is None:
        raise IncompatibleError("The model has no resolution policy; build it with adaptsam.create_model(..., "
                                "policy=..., resolution=R) or adaptsam.load_adapter(file).")
    started = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    twin, merged = _inference_copy(model, config.merge, config.device)
    graph = _PromptedGraph(twin) if twin.uses_prompts else _ClassGraph(twin)
    inputs, outputs = graph_signature(twin, config.batch_size)
    trace = {name: t.to(twin.device) for name, t in
             example_inputs(twin, config.batch_size, TRACE_BOXES, config.seed + 1).items()}
    dynamic = {"boxes": {1: "K"}, "logits": {1: "K"}, "iou": {1: "K"}} if twin.uses_prompts else None
    try:
        with warnings.catch_warnings():  # the tracer warns about every Python-level shape use; verification decides
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(trace.values()), str(path), dynamo=False, opset_version=config.opset,
                              input_names=list(inputs), output_names=list(outputs), dynamic_axes=dynamic,
                              do_constant_folding=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        adapter = getattr(model.adapter, "name", "no adapter")
        raise ExportError(f"Could not trace {model.info.name} ({adapter}) into ONNX opset {config.opset}: "
                          f"{type(exc).__name__}: {exc}. Models whose forward uses operations ONNX lacks (e.g. "
                          f"sam_adapter's FFT high-pass) cannot be exported by torch's TorchScript exporter.") from exc
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    for key, value in sorted(export_metadata(model, merged).items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    diff_logits = diff_iou = None
    if config.verify:
        diff_logits, diff_iou = verify_onnx(path, model, config)
    return ExportReport(path, inputs, outputs, merged, diff_logits, diff_iou, time.perf_counter() - started)


def export_metadata(model: SamModel, merged: bool) -> dict[str, str]:
    import json

    from adaptsam import __version__

    adapter = getattr(model, "adapter", None)
    return {"adaptsam.version": __version__, "adaptsam.backbone": model.info.name,
            "adaptsam.adapter": adapter.name if adapter is not None else "",
            "adaptsam.adapter_merged": json.dumps(merged),
            "adaptsam.policy": json.dumps(model.policy.to_dict(), sort_keys=True),
            "adaptsam.resolution": str(model.resolution),
            "adaptsam.image": "float32 RGB in [0, 1], degraded to longest side R and padded bottom/right",
            "adaptsam.boxes": "float32 x0, y0, x1, y1 pixel indices of the R×R input" if model.uses_prompts else ""}


@torch.no_grad()
def verify_onnx(path: str | os.PathLike[str], model: SamModel, config: ExportConfig | None = None,
                box_counts: tuple[int, ...] = (1, 3)) -> tuple[float, float]:
    """Max |onnxruntime − torch| of logits and IoU on seeded inputs (for several box counts K, which also
    checks that K is dynamic); raises :class:`ExportError` above ``config.tolerance``."""
    _, ort = require_onnx()
    config = config or ExportConfig()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = copy.deepcopy(model).cpu().eval()
    worst_logits = worst_iou = 0.0
    for n, k in enumerate(box_counts if model.uses_prompts else (0,)):
        inputs = example_inputs(reference, config.batch_size, k, config.seed + 10 + n)
        if model.uses_prompts:
            expected = reference(inputs["image"], boxes=inputs["boxes"])
        else:
            expected = reference(inputs["image"])
        got = session.run(["logits", "iou"], {name: t.numpy() for name, t in inputs.items()})
        for name, value, want in (("logits", got[0], expected.logits), ("iou", got[1], expected.iou)):
            if tuple(value.shape) != tuple(want.shape):
                raise ExportError(f"{path}: ONNX {name} has shape {tuple(value.shape)} for K={k} boxes, expected "
                                  f"{tuple(want.shape)} (the torch model's).")
        worst_logits = max(worst_logits, float((torch.from_numpy(got[0]) - expected.logits).abs().max()))
        worst_iou = max(worst_iou, float((torch.from_numpy(got[1]) - expected.iou).abs().max()))
    if max(worst_logits, worst_iou) > config.tolerance:
        raise ExportError(f"{path} does not reproduce the torch model: max |onnx - torch| = {worst_logits:.3g} on "
                          f"logits, {worst_iou:.3g} on IoU; expected <= {config.tolerance:g}. Try another --opset, or "
                          f"--no-merge to rule out the adapter merge.")
    return worst_logits, worst_iou
