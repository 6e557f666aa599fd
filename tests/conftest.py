"""Shared fixtures: the real-data root (or a skip that says why), fresh registries, determinism."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from adaptsam import registry


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--extended", action="store_true",
                     help="also run tests marked extended (optional extras such as Ray; tox -e extended)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``extended`` run only with ``--extended``: they check optional extras at a cost the default
    run (under 10 minutes on 2 cores) can't carry."""
    if config.getoption("--extended"):
        return
    skip = pytest.mark.skip(reason="extended test: run with --extended (tox -e extended)")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def data_root() -> Path:
    """``$ADAPTSAM_DATA`` (the shared real datasets); tests that need it are skipped when it is unset."""
    value = os.environ.get("ADAPTSAM_DATA")
    if not value:
        pytest.skip("ADAPTSAM_DATA is not set: point it at the shared datasets (e.g. ../shared/datasets) to run "
                    "tests on real data")
    root = Path(value)
    if not root.is_dir():
        pytest.skip(f"ADAPTSAM_DATA={value} is not a folder")
    return root


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A folder on sys.path for fake distributions; registries are re-discovered before and after."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    registry.refresh_all()
    yield folder
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("fake_adaptsam_plugin")]:
        del sys.modules[name]
    registry.refresh_all()
