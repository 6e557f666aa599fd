"""The package surface: public names, and imports that stay cheap and free of side effects."""

from __future__ import annotations

import subprocess
import sys

import adaptsam.data as data


def test_public_names_resolve():
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    import adaptsam.data.degrade  # noqa: F401 - loading the submodule must not hide the function

    assert callable(data.degrade) and data.degrade.__module__ == "adaptsam.data.degrade"


def test_building_a_dataset_imports_neither_albumentations_nor_scipy():
    code = (
        "import sys\n"
        "from adaptsam.registry import datasets\n"
        "ds = datasets.get('synthetic')('test', n=2, size=32); ds[0]\n"
        "print(sorted(m for m in ('albumentations', 'scipy', 'cv2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
