"""``adaptsam --version`` and ``adaptsam list`` answer without importing torch (issue 15: it took 2.4 s).

Each check runs in a fresh interpreter: in the test process torch is long imported, so only a subprocess
shows what the command path itself imports.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import contextlib, io, json, sys
from adaptsam.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main({argv!r})
    except SystemExit as exc:  # argparse's --version exits
        code = exc.code
heavy = sorted(m for m in ("torch", "numpy", "adaptsam.engine", "adaptsam.model") if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy, "out": out.getvalue()}}))
"""


def run_cli(argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["train", "--help"], ["list"], ["list", "adapter"],
                                  ["list", "policy", "nat*"]], ids=" ".join)
def test_command_runs_without_importing_torch(argv):
    result = run_cli(argv)
    assert result["code"] == 0
    assert "torch" not in result["heavy"], f"adaptsam {' '.join(argv)} imported {result['heavy']}"
    assert result["heavy"] == []


def test_version_prints_the_version():
    import adaptsam

    assert run_cli(["--version"])["out"].strip() == f"adaptsam {adaptsam.__version__}"


def test_plain_list_names_each_part_and_its_distribution():
    from importlib import metadata

    out = run_cli(["list"])["out"]
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for group in ("adaptsam.backbones", "adaptsam.adapters", "adaptsam.policies", "adaptsam.datasets"):
        assert f"({group}):" in out
        for ep in metadata.entry_points(group=group):
            assert ep.name in lines, f"{ep.name} ({group}) missing from adaptsam list"
            assert f"[{ep.dist.metadata['Name']}]" in lines[ep.name]
    assert "policies (adaptsam.policies):" in out and "policys" not in out


@pytest.mark.parametrize(("kind", "plural"), [("policy", "policies"), ("backbone", "backbones"),
                                              ("bench preset", "bench presets"), ("key", "keys")])
def test_unknown_name_lists_the_registered_kind_in_the_plural(kind, plural):
    from adaptsam.errors import UnknownNameError

    assert f"Registered {plural}: a, b." in str(UnknownNameError(kind, "c", ["b", "a"]))


def test_an_unknown_policy_says_policies():
    from adaptsam.errors import UnknownNameError
    from adaptsam.registry import policies

    with pytest.raises(UnknownNameError, match="Registered policies: "):
        policies.get("no_such_policy")


def test_verbose_list_shows_each_option_with_its_default_and_help(capsys):
    from adaptsam.cli import main
    from adaptsam.registry import adapters

    assert main(["list", "-v", "adapter", "lora"]) == 0
    out = capsys.readouterr().out
    for name, help_text in adapters.get("lora").config_class.help().items():
        line = next(line for line in out.splitlines() if line.strip().startswith(f"option {name} = "))
        assert help_text and help_text in line
    assert "option rank = 8" in out
    assert main(["list", "-v", "policy", "upsample"]) == 0  # a policy's options are its own fields
    assert "option interpolation = 'bilinear'" in capsys.readouterr().out
