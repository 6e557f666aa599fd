"""Plugins in the adapters and policies groups: found, isolated when broken, refused when names clash.

Each case writes a throw-away distribution (dist-info + module) with ``adaptsam.testing.make_distribution``
into the ``plugin_path`` folder, which is on ``sys.path`` for the test only, exactly as an installed plugin.
The complete example of docs/plugins.md is installed the same way, straight from the page, and must pass
the adapter contract.
"""

from __future__ import annotations

import configparser
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import adaptsam
from adaptsam import registry
from adaptsam.cli import main
from adaptsam.errors import DuplicateNameError, PluginLoadError
from adaptsam.testing import check_adapter, make_distribution

ADAPTER_SOURCE = '''
from dataclasses import dataclass

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules


@dataclass(frozen=True)
class HeadConfig(AdapterConfig):
    iou_head: bool = help_field(True, "train the IoU prediction head")


class HeadAdapter(Adapter):
    """Trains only the mask decoder's IoU head (a plugin adapter)."""

    name = "fake_head"
    config_class = HeadConfig

    def inject(self, model):
        if self.config.iou_head:
            trainable_modules(model.mask_decoder.iou_prediction_head)
'''

POLICY_SOURCE = '''
from dataclasses import dataclass

from adaptsam.policies.native import NativePolicy


@dataclass(frozen=True)
class MatchedWindowPolicy(NativePolicy):
    """Native input with matched windows (a plugin policy)."""

    name = "fake_native"
    match_window: bool = True
'''


@dataclass(frozen=True)
class Group:
    """One entry-point group and how to use a part from it."""

    group: str
    kind: str
    name: str  # what the working plugin registers
    source: str
    target: str

    def registry(self) -> registry.Registry:
        return registry.REGISTRIES[self.kind]

    def build(self, name: str) -> adaptsam.SamModel:
        if self.kind == "adapter":
            return adaptsam.create_model("vit_test", policy="native", resolution=64, adapter=name)
        return adaptsam.create_model("vit_test", policy=name, resolution=64)


GROUPS = [
    Group("adaptsam.adapters", "adapter", "fake_head", ADAPTER_SOURCE, "fake_adaptsam_plugin_adapter:HeadAdapter"),
    Group("adaptsam.policies", "policy", "fake_native", POLICY_SOURCE,
          "fake_adaptsam_plugin_policy:MatchedWindowPolicy"),
]
IDS = [g.kind for g in GROUPS]


def install(folder, group: Group, distribution: str, name: str, version: str = "0.1.0") -> None:
    module = group.target.split(":")[0]
    make_distribution(folder, distribution, {group.group: {name: group.target}}, {f"{module}.py": group.source},
                      version=version)


@pytest.mark.parametrize("group", GROUPS, ids=IDS)
def test_working_plugin_is_found_and_used(plugin_path, group):
    install(plugin_path, group, "fake-adaptsam-good", group.name, version="2.0.1")
    entry = group.registry().entry(group.name)
    assert (entry.origin, entry.version, entry.target) == ("fake-adaptsam-good", "2.0.1", group.target)
    assert group.name in group.registry().names()
    model = group.build(group.name)
    if group.kind == "adapter":
        assert model.adapter.name == "fake_head"
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(n.startswith("mask_decoder.iou_prediction_head.") for n in trainable)
    else:
        assert model.policy.name == "fake_native" and type(model.policy).__module__ == "fake_adaptsam_plugin_policy"
        assert {b.window_size for b in model.image_encoder.blocks if b.window_size} == {4}


@pytest.mark.parametrize("group", GROUPS, ids=IDS)
def test_broken_plugin_is_reported_and_isolated(plugin_path, group, capsys):
    module = f"fake_adaptsam_plugin_broken_{group.kind}"
    make_distribution(plugin_path, "fake-adaptsam-broken", {group.group: {"broken_part": f"{module}:X"}},
                      {f"{module}.py": "import a_module_that_does_not_exist\n"})
    with pytest.raises(PluginLoadError) as info:
        group.build("broken_part")
    message = str(info.value)
    assert "fake-adaptsam-broken" in message and f"{module}:X" in message
    assert "ModuleNotFoundError" in message and "a_module_that_does_not_exist" in message

    assert main(["list", "-v"]) == 0  # listing never fails because of a plugin
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("broken_part"))
    assert "fake-adaptsam-broken 0.1.0" in line and "BROKEN" in line and "a_module_that_does_not_exist" in line
    assert f"entry point: {module}:X" in out and "plugin problem(s)" in out

    assert "broken_part" not in group.registry().names()
    builtin = {"adapter": "lora", "policy": "native"}[group.kind]
    assert group.build(builtin) is not None  # built-ins keep working


@pytest.mark.parametrize("group", GROUPS, ids=IDS)
def test_one_name_from_two_distributions_names_both(plugin_path, group, capsys):
    for distribution in ("fake-adaptsam-one", "fake-adaptsam-two"):
        install(plugin_path, group, distribution, "same_name")
    with pytest.raises(DuplicateNameError) as info:
        group.build("same_name")
    assert "fake-adaptsam-one" in str(info.value) and "fake-adaptsam-two" in str(info.value)
    assert "same_name" in group.registry().conflicts()
    main(["list", "-v", group.kind])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("same_name"))
    assert "CONFLICT" in line and "fake-adaptsam-one 0.1.0" in line and "fake-adaptsam-two 0.1.0" in line
    builtin = {"adapter": "frozen", "policy": "upsample"}[group.kind]
    assert group.build(builtin) is not None  # other names are unaffected


@pytest.mark.parametrize("group", GROUPS, ids=IDS)
def test_kill_switch_hides_plugins_of_every_group(plugin_path, group, monkeypatch):
    install(plugin_path, group, "fake-adaptsam-good", group.name)
    monkeypatch.setenv("ADAPTSAM_NO_PLUGINS", "1")
    registry.refresh_all()
    assert group.name not in group.registry().names()
    assert {"adapter": "lora", "policy": "native"}[group.kind] in group.registry().names()


DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def doc_block(first_line: str) -> str:
    """The fenced code block of docs/plugins.md whose first line is ``first_line``."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if b.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"expected one block starting {first_line!r} in {DOCS}, found {len(found)}"
    return found[0]


def test_the_plugin_guide_example_works(plugin_path, capsys):
    setup = configparser.ConfigParser()
    setup.read_string(doc_block("# setup.cfg"))
    distribution, module = setup["metadata"]["name"], setup["options"]["py_modules"].strip()
    entry_points = {group: dict(line.split(" = ") for line in value.strip().splitlines())
                    for group, value in setup["options.entry_points"].items()}
    make_distribution(plugin_path, distribution, entry_points, {f"{module}.py": doc_block(f"# {module}.py")},
                      version=setup["metadata"]["version"])
    try:
        assert "ln_tune" in adaptsam.list_adapters()
        for backbone in ("vit_test", "tinyvit_test"):
            check_adapter("ln_tune", backbone, policies=("native",), workdir=plugin_path.parent)
        main(["list", "-v", "adapter", "ln_tune"])
        out = capsys.readouterr().out
        assert "[adaptsam-ln-tune 0.1.0]" in out and "entry point: adaptsam_ln_tune:LnTuneAdapter" in out
    finally:
        sys.modules.pop(module, None)
