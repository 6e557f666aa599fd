"""Every plugin example in docs/plugins.md installs and passes the contract check of its kind of part.

Each fenced block whose first line is ``# <module>.py`` is a plugin module; each ``ini`` block whose first line
starts with ``# setup.cfg`` declares a distribution's entry points (its name from ``[metadata]`` or from
``# setup.cfg of NAME``). Every distribution is written with ``adaptsam.testing.make_distribution`` into a
folder on ``sys.path``, found through its entry points like an installed plugin, and each part it registers
runs ``check_adapter`` / ``check_backbone`` / ``check_policy`` / ``check_dataset``.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

import pytest

from adaptsam import registry
from adaptsam.testing import check_adapter, check_backbone, check_dataset, check_policy, make_distribution

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCKS = re.findall(r"```([a-z]*)\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
MODULES = {m.group(1): body for _, body in BLOCKS if (m := re.fullmatch(r"# (\w+)\.py", body.splitlines()[0].strip()))}
CHECKS = {
    "adaptsam.adapters": lambda name, tmp: check_adapter(name, "vit_test", policies=("native",), workdir=tmp),
    "adaptsam.backbones": lambda name, tmp: check_backbone(name, resolutions=(64,)),
    "adaptsam.policies": lambda name, tmp: check_policy(name),
    "adaptsam.datasets": lambda name, tmp: check_dataset(name),
}


def distributions() -> list[tuple[str, str, dict[str, dict[str, str]]]]:
    """(distribution, version, {group: {name: target}}) for every setup.cfg block of the page."""
    found = []
    for language, body in BLOCKS:
        first = body.splitlines()[0].strip()
        if language != "ini" or not first.startswith("# setup.cfg"):
            continue
        cfg = configparser.ConfigParser()
        cfg.read_string(body)
        name = cfg["metadata"]["name"] if cfg.has_section("metadata") else first.split(" of ", 1)[1].strip()
        version = cfg["metadata"]["version"] if cfg.has_section("metadata") else "0.1.0"
        groups = {group: dict(line.split(" = ") for line in value.strip().splitlines())
                  for group, value in cfg["options.entry_points"].items()}
        found.append((name, version, groups))
    return found


PARTS = [(dist, version, group, name, target) for dist, version, groups in distributions()
         for group, entries in groups.items() for name, target in entries.items()]


def test_the_page_has_an_example_for_every_kind_of_part():
    groups = {group for _, _, group, _, _ in PARTS}
    assert groups == set(CHECKS), f"examples for {sorted(groups)}; expected one for each of {sorted(CHECKS)}"
    heads = [body for body in MODULES.values() if "PromptFreeHead" in body and "def head(" in body]
    assert heads, "expected a prompt-free head example (an adapter overriding head() with a PromptFreeHead)"
    for *_, target in PARTS:
        assert target.split(":")[0] in MODULES, f"entry point {target} has no '# module.py' block on the page"


@pytest.mark.parametrize(("distribution", "version", "group", "name", "target"), PARTS,
                         ids=[f"{p[2].split('.')[1]}-{p[3]}" for p in PARTS])
def test_example_installs_and_passes_its_contract(plugin_path, distribution, version, group, name, target):
    module = target.split(":")[0]
    make_distribution(plugin_path, distribution, {group: {name: target}}, {f"{module}.py": MODULES[module]},
                      version=version)
    try:
        entry = next(r for r in registry.REGISTRIES.values() if r.group == group).entry(name)
        assert (entry.origin, entry.target) == (distribution, target)
        CHECKS[group](name, plugin_path.parent)
    finally:
        sys.modules.pop(module, None)
