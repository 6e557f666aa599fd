"""The bench's timing phase: every distinct inference graph of a bench, timed together in interleaved rounds.

Why one phase: a cell that timed itself right after training measured whatever else the machine was doing
at that moment (three cells running one graph came out 8.6× apart on a busy 2-core machine). Here, after
every cell has trained, the deployed copy of each done cell (:func:`~adaptsam.inference.for_inference`) is
rebuilt from its adapter file and given a :func:`~adaptsam.inference.graph_signature`; each signature is
timed once, by the protocol ``adaptsam perf`` uses: warm-up, then rounds in which every graph runs in turn
(rotating order), the median over rounds giving images/s. Each cell's speed **ratio to a reference graph**
is taken within each round (a slow spell slows both sides of a round alike) and reported as the median and
the spread over rounds. The reference for a cell is the zero-shot ``upsample`` graph of its backbone and R
when the bench has one (what "× vs upsample" means), else the slowest graph of the bench. With
``compile`` (``adaptsam bench --compile``), each graph's ``torch.compile`` copy runs in the same rounds and
gets a column of its own (images/s compiled, speed-up over eager).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from adaptsam.bench.measure import sample_inputs


@dataclass(frozen=True)
class TimingConfig:
    """How a bench times its graphs."""

    rounds: int = 5  # timed rounds (each runs every graph once, in rotating order)
    warmup: int = 1  # untimed passes of each graph first
    min_pass_s: float = 0.25  # a graph faster than this runs several times per round (their mean counts)
    compile: bool = False  # also time torch.compile of each graph, in the same rounds (its own column)
    threads: int = 1  # intra-op threads while timing (0: torch's default, all cores); see BenchSpec.timing_threads

    def __post_init__(self) -> None:
        from adaptsam.errors import ConfigError

        if self.rounds < 1 or self.warmup < 0 or self.min_pass_s < 0 or self.threads < 0:
            raise ConfigError(f"Expected timing rounds >= 1, warmup >= 0, min_pass_s >= 0, threads >= 0, got "
                              f"{asdict(self)}.")


@dataclass(frozen=True)
class CellToTime:
    """What the timing phase needs of a done cell (plain data: it travels to a worker process)."""

    key: str
    label: str
    backbone: str
    adapter: str
    policy: str
    resolution: int
    batch: int
    adapter_file: str
    device: str = "cpu"  # where the deployed copy is rebuilt and timed (the bench's device)
    precision: str = "fp32"  # autocast of the timed passes: bf16 or fp32


@dataclass
class GraphTimes:
    """Seconds per image of one graph, one value per round."""

    signature: str
    description: str
    batch: int
    per_image_s: list[float] = field(default_factory=list)
    pass_s: list[float] = field(default_factory=list)  # every timed pass (batch latency)

    @property
    def images_per_s(self) -> float:
        return 1.0 / statistics.median(self.per_image_s)


@dataclass
class TimingOutcome:
    """The timing phase's result: graphs by signature, and each cell's signature."""

    graphs: dict[str, GraphTimes]  # compiled copies under compiled_key(signature)
    cell_graph: dict[str, str]
    failed: dict[str, str]  # cell key → why it could not be timed
    compile_failed: dict[str, str] = field(default_factory=dict)  # signature → why torch.compile failed


def compiled_key(signature: str) -> str:
    """Where a graph's torch.compile'd copy is kept among the timed graphs."""
    return f"{signature}#compiled"


def _build(cell: CellToTime) -> Any:
    """The deployed copy of a done cell, rebuilt from its adapter file (backbone, policy, adapter, trained
    tensors): the same graph the cell would be deployed as."""
    from adaptsam.api import load_adapter
    from adaptsam.inference import for_inference

    return for_inference(load_adapter(cell.adapter_file, device=cell.device))


def _forward_fn(model: Any, batch: int, precision: str = "fp32") -> Callable[[], Any]:
    from adaptsam.devices import autocast

    images, boxes = sample_inputs(model, batch)
    device = model.device

    @torch.inference_mode()
    def run() -> Any:
        with autocast(device, precision):
            out = model(images, boxes=boxes) if model.uses_prompts else model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return run


def _compiled_fn(model: Any, batch: int, precision: str, warmup: int) -> Callable[[], Any]:
    """``torch.compile`` of the deployed copy (inductor), compiled by its first, untimed passes here, so a
    compiler failure (no C++ compiler, an unsupported op) surfaces now and costs only this column."""
    compiled = torch.compile(model)
    fn = _forward_fn(compiled, batch, precision)
    for _ in range(max(1, warmup)):
        fn()
    return fn


def _warm_up(fn: Callable[[], Any], config: TimingConfig, passes: int) -> int:
    """Run ``passes`` untimed passes (at least one, whose duration is all this needs) and return how many
    passes a round takes to last ``min_pass_s``. The last warm-up pass is the probe: a separate probe pass
    cost the upsample graph one more 8-second pass per bench on a 2-core VM."""
    once = 0.0
    for _ in range(max(1, passes)):
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
    return max(1, min(50, int(config.min_pass_s / max(once, 1e-6)) + 1)) if once < config.min_pass_s else 1


def time_graphs(cells: list[CellToTime], config: TimingConfig, progress: bool = False) -> TimingOutcome:
    """Build every cell's deployed copy, group by graph signature, and time the distinct graphs together."""
    from adaptsam.inference import graph_signature

    graphs: dict[str, GraphTimes] = {}
    runners: dict[str, Callable[[], Any]] = {}
    cell_graph: dict[str, str] = {}
    failed: dict[str, str] = {}
    compile_failed: dict[str, str] = {}
    warmed: set[str] = set()  # compiled copies: warmed (compiled) as they are built
    for cell in cells:
        try:
            model = _build(cell)
        except Exception as exc:  # noqa: BLE001 - a cell that can't be rebuilt is untimed, the others go on
            failed[cell.key] = f"{type(exc).__name__}: {exc}"
            continue
        signature = graph_signature(model, cell.batch)
        cell_graph[cell.key] = signature
        if signature not in graphs:
            graphs[signature] = GraphTimes(signature, f"{cell.backbone}/{cell.policy}/R{cell.resolution}/"
                                                      f"{cell.adapter}", cell.batch)
            runners[signature] = _forward_fn(model, cell.batch, cell.precision)
            if config.compile:
                try:
                    runners[compiled_key(signature)] = _compiled_fn(model, cell.batch, cell.precision, config.warmup)
                    warmed.add(compiled_key(signature))
                    graphs[compiled_key(signature)] = GraphTimes(compiled_key(signature),
                                                                 f"{graphs[signature].description} (compiled)",
                                                                 cell.batch)
                except Exception as exc:  # noqa: BLE001 - the eager figure stands; the compiled one is n/a
                    compile_failed[signature] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        del model
    repeats = {signature: _warm_up(fn, config, 0 if signature in warmed else config.warmup)
               for signature, fn in runners.items()}
    names = list(runners)
    rounds: Iterable[int] = range(config.rounds)
    if progress:
        from tqdm.auto import tqdm

        rounds = tqdm(rounds, desc=f"timing {len(names)} graphs", unit="round", dynamic_ncols=True)
    for round_ in rounds:
        shift = round_ % max(1, len(names))
        for signature in names[shift:] + names[:shift]:
            fn, graph = runners[signature], graphs[signature]
            passes = []
            for _ in range(repeats[signature]):
                start = time.perf_counter()
                fn()
                passes.append(time.perf_counter() - start)
            graph.pass_s.extend(passes)
            graph.per_image_s.append(statistics.fmean(passes) / graph.batch)
    return TimingOutcome(graphs, cell_graph, failed, compile_failed)


def reference_graphs(cells: list[CellToTime], outcome: TimingOutcome) -> dict[str, tuple[str, str]]:
    """Each timed cell's reference graph and a phrase naming it: the zero-shot upsample graph of its backbone
    and R (else any upsample graph there, the fewest parameters first: the one without adapter modules),
    else the slowest graph of the bench."""
    timed = [c for c in cells if c.key in outcome.cell_graph]
    if not timed:
        return {}
    slowest = max(outcome.graphs.values(), key=lambda g: statistics.median(g.per_image_s))
    out = {}
    for cell in timed:
        candidates = [c for c in timed if c.backbone == cell.backbone and c.resolution == cell.resolution
                      and c.policy == "upsample"]
        candidates.sort(key=lambda c: (c.adapter != "frozen", c.adapter))
        if candidates:
            ref = candidates[0]
            out[cell.key] = (outcome.cell_graph[ref.key], f"{ref.backbone} upsample R{ref.resolution} ({ref.adapter})")
        else:
            out[cell.key] = (slowest.signature, f"slowest graph ({slowest.description})")
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cell_speeds(cells: list[CellToTime], outcome: TimingOutcome) -> dict[str, dict[str, Any]]:
    """Per cell: images/s of its graph, batch latency p50/p95, and the per-round speed ratio to its reference
    (median, min, max over rounds)."""
    references = reference_graphs(cells, outcome)
    out = {}
    for cell in cells:
        if cell.key not in outcome.cell_graph:
            continue
        graph = outcome.graphs[outcome.cell_graph[cell.key]]
        ref_signature, ref_name = references[cell.key]
        ref = outcome.graphs[ref_signature]
        ratios = [r / g for g, r in zip(graph.per_image_s, ref.per_image_s)]
        out[cell.key] = {
            "images_per_s": graph.images_per_s, "latency_p50_ms": _percentile(graph.pass_s, 0.5) * 1000,
            "latency_p95_ms": _percentile(graph.pass_s, 0.95) * 1000, "batch": graph.batch,
            "graph": graph.signature, "graph_description": graph.description,
            "rounds": len(graph.per_image_s), "reference": ref_name, "reference_graph": ref_signature,
            "speed_ratio": statistics.median(ratios), "speed_ratio_min": min(ratios),
            "speed_ratio_max": max(ratios), "threads": torch.get_num_threads(),
            **_compiled_figures(graph, outcome),
        }
    return out


def _compiled_figures(graph: GraphTimes, outcome: TimingOutcome) -> dict[str, Any]:
    """images/s of the graph's torch.compile'd copy and its speed-up over eager (median of per-round ratios);
    the compiler's error instead where it failed; nothing when the bench did not compile."""
    compiled = outcome.graphs.get(compiled_key(graph.signature))
    if compiled is not None:
        ratios = [e / c for e, c in zip(graph.per_image_s, compiled.per_image_s)]
        return {"images_per_s_compiled": compiled.images_per_s, "compile_speedup": statistics.median(ratios)}
    if graph.signature in outcome.compile_failed:
        return {"compile_error": outcome.compile_failed[graph.signature]}
    return {}


def run_timing(cells: list[CellToTime], config: TimingConfig, progress: bool = False) -> dict[str, Any]:
    """The whole phase as plain data (what a worker process sends back): speeds per cell, failures."""
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        outcome = time_graphs(cells, config, progress=progress)
        speeds = cell_speeds(cells, outcome)
    finally:
        torch.set_num_threads(before)
    return {"speeds": speeds, "failed": outcome.failed, "graphs": len(outcome.graphs)}
