"""report.html from a real (tiny) bench: self-contained, the same rows as the JSON, and sortable in a real browser.

The browser test drives Debian's headless ``chromium`` (``.ci/run`` installs it; without it the test is skipped
and says why). Network: every request the browser makes goes to a local proxy the test listens on, so "no
request left the page" is counted at the socket, not taken from the page's word; a control page with one
remote image proves that the proxy sees requests. Chromium itself calls its own services whatever the page
(component updater, network time, sign-in: hosts under google.com / googleapis.com / gstatic.com / gvt1.com,
even with the flags below); those are set apart by host, and the page-level checks (no CSP violation, no
resource-timing entry, no URL in the file) cover them.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from adaptsam.bench.runner import run_bench
from adaptsam.bench.spec import AdapterChoice, BenchSpec
from adaptsam.cli import main

HARNESS = """<script>
(function () {
  var out = {violations: []};
  document.addEventListener("securitypolicyviolation", function (e) { out.violations.push(e.blockedURI); });
  window.addEventListener("load", function () {
    var table = document.querySelector("table.results");
    function dice() {
      return Array.prototype.map.call(table.querySelectorAll("tbody.entry td[data-key=dice]"),
                                      function (td) { return parseFloat(td.dataset.value); });
    }
    out.before = dice();
    table.querySelector("th[data-key=dice]").click();
    out.after = dice();
    var box = document.querySelector("input.filter");
    box.value = "lora";
    box.dispatchEvent(new Event("input"));
    out.shown = Array.prototype.filter.call(table.querySelectorAll("tbody.entry"),
                                            function (b) { return b.style.display !== "none"; }).length;
    box.value = "";
    box.dispatchEvent(new Event("input"));
    out.resources = performance.getEntriesByType("resource").map(function (e) { return e.name; });
    var pre = document.createElement("pre");
    pre.id = "harness";
    pre.textContent = JSON.stringify(out);
    document.body.insertBefore(pre, document.body.firstChild);
  });
})();
</script>"""


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory) -> Path:
    """A real bench on a tiny random-init backbone: zero-shot and LoRA (different Dice), one seed."""
    out = tmp_path_factory.mktemp("html-bench")
    spec = BenchSpec(backbones=("lite_medsam_test",), adapters=(AdapterChoice("frozen"), AdapterChoice("lora")),
                     policies=("native",), resolutions=(32,), datasets=("synthetic",), shots=(2,),
                     seeds=(0,), steps=2, eval_limit=4, throughput_batch=1, pretrained=False, name="tiny-html")
    run_bench(spec, out, progress=False)
    return out


def test_html_is_self_contained_and_matches_json(bench_out, capsys):
    html = (bench_out / "report.html").read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"(src|href|action)\s*=\s*[\"'](?!data:|#)", html)  # nothing to fetch but data: URIs
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("data:image/png;base64,") == 3  # the three plots, embedded
    assert "How to read this" in html and 'class="mark best"' in html and 'class="mark pareto"' in html
    assert main(["report", str(bench_out), "--json"]) == 0
    model = json.loads(capsys.readouterr().out)
    rows = model["datasets"][0]["rows"]
    assert model["name"] == "tiny-html" and len(rows) == 2 and sum(model["cells"].values()) == 2
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["best"] and any(r["pareto"] for r in rows)
    assert [r["dice"] for r in rows] == sorted((r["dice"] for r in rows), reverse=True)
    assert html.count('<tbody class="entry"') == 2
    for row in rows:  # every cell's config and key is in the page (expandable details)
        assert row["cells"][0]["key"] in html and "config" in row["cells"][0]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium on PATH: install Debian's 'chromium' package (.ci/run does when run as root) to run "
                "the browser test")


BROWSER_SERVICES = re.compile(rb"^(CONNECT |[A-Z]+ https?://)([a-z0-9.-]+\.)?(google\.com|googleapis\.com|gstatic\.com|"
                              rb"gvt1\.com)[:/ ]")


def _page_requests(requests: list[bytes]) -> list[bytes]:
    return [r for r in requests if not BROWSER_SERVICES.match(r)]


class _Proxy:
    """A local TCP listener used as the browser's proxy: it records every connection and answers 502."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n")[0])
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _run_chromium(page: Path, proxy: _Proxy, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                   "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate",
                   f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
                   "--virtual-time-budget=3000", *args, page.as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_report_in_headless_chromium(bench_out, tmp_path):
    """Click the Dice header: rows re-order (ascending); the filter hides rows; no request leaves the page."""
    html = (bench_out / "report.html").read_text()
    head = html.index("<meta name=\"viewport\"")  # right after the CSP meta, before anything could load
    page = tmp_path / "report-under-test.html"
    page.write_text(html[:head] + HARNESS + html[head:])
    proxy = _Proxy()
    try:
        # the detector works: a page with one remote image and no CSP reaches the proxy
        control = tmp_path / "control.html"
        control.write_text('<html><body><img src="http://example.invalid/x.png"></body></html>')
        _run_chromium(control, proxy, "--dump-dom")
        assert any(b"example.invalid" in r for r in _page_requests(proxy.requests)), proxy.requests
        proxy.requests.clear()

        dom = _run_chromium(page, proxy, "--dump-dom")
        found = re.search(r'<pre id="harness">(.*?)</pre>', dom, re.S)
        assert found, dom[:2000]
        result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        before, after = result["before"], result["after"]
        assert len(before) == 2 and len(set(before)) > 1, before  # distinct Dice, so order can change
        assert before == sorted(before, reverse=True)  # opens ranked by Dice
        assert after == sorted(before) and after != before  # one click: ascending
        assert result["shown"] == 1  # the filter box keeps the one LoRA row
        assert result["violations"] == [] and result["resources"] == []
        screenshot = tmp_path / "report.png"
        _run_chromium(page, proxy, f"--screenshot={screenshot}", "--window-size=1400,1500",
                      "--hide-scrollbars")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
        assert _page_requests(proxy.requests) == []  # not one request from the report page, at the socket
    finally:
        proxy.close()
