"""Shared fixtures for the pytest-benchmark suites (``pytest benchmarks --benchmark-only``).

Models come from :mod:`adaptsam.bench.perf` (built once per session) so the suites and ``adaptsam perf``
time the same things. Each encoder benchmark records its analytic FLOPs and achieved GFLOP/s in
``extra_info``, next to the session's sgemm peak.
"""

from __future__ import annotations

import pytest

from adaptsam.bench.peak import Peak, sgemm_peak


@pytest.fixture(scope="session")
def peak() -> Peak:
    return sgemm_peak(repeats=20)


def record_rate(benchmark, flops: float, per_call_images: int, peak: Peak) -> None:
    """Put FLOPs, GFLOP/s (from the best round) and % of the sgemm peak into the benchmark's extra_info."""
    stats = benchmark.stats.stats if benchmark.stats else None
    benchmark.extra_info["useful_gflop_per_image"] = round(flops / 1e9, 2)
    benchmark.extra_info["sgemm_peak_gflops"] = round(peak.gflops, 1)
    if stats is not None and stats.min > 0:
        rate = flops * per_call_images / stats.min / 1e9
        benchmark.extra_info["gflops"] = round(rate, 1)
        benchmark.extra_info["percent_of_peak"] = round(peak.percent(rate), 1)
