"""The registry: built-ins through entry points, plugins discovered and isolated, names checked."""

from __future__ import annotations

import pytest

import adaptsam
from adaptsam import registry
from adaptsam.errors import DuplicateNameError, PluginLoadError, UnknownNameError
from adaptsam.testing import make_distribution

BUILTIN_BACKBONES = {"vit_b", "vit_t", "lite_medsam", "vit_test", "tinyvit_test", "lite_medsam_test"}


def test_builtins_come_from_adaptsam_entry_points():
    assert set(adaptsam.list_backbones()) >= BUILTIN_BACKBONES
    assert {"native", "upsample"} <= set(adaptsam.list_policies())
    for name in BUILTIN_BACKBONES:
        entry = registry.backbones.entry(name)
        assert entry.origin == "adaptsam"
        assert entry.target.startswith("adaptsam.backbones.")
        assert entry.description


def test_wildcards_filter_names():
    assert adaptsam.list_backbones("*_test") == ["lite_medsam_test", "tinyvit_test", "vit_test"]
    assert adaptsam.list_backbones("nothing*") == []


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as info:
        registry.backbones.get("vit_bb")
    message = str(info.value)
    assert "'vit_bb'" in message and "Did you mean" in message and "'vit_b'" in message
    assert isinstance(info.value, KeyError)  # callers catching KeyError keep working


def test_decorator_registers_in_process_and_unregisters():
    @adaptsam.register_backbone("my_tiny", description="a notebook backbone")
    def my_tiny(checkpoint=None, pretrained=True, download=False):
        return registry.backbones.get("vit_test")(checkpoint, pretrained, download)

    try:
        assert "my_tiny" in adaptsam.list_backbones()
        entry = registry.backbones.entry("my_tiny")
        assert entry.origin == "<in-process>" and entry.description == "a notebook backbone"
        model = adaptsam.create_model("my_tiny", resolution=64, policy="native")
        assert model.resolution == 64
    finally:
        registry.backbones.unregister("my_tiny")
    assert "my_tiny" not in adaptsam.list_backbones()


def test_in_process_registration_cannot_shadow_an_installed_part_by_accident():
    with pytest.raises(DuplicateNameError, match="adaptsam 0.1.0.*<in-process>|<in-process>.*adaptsam"):
        adaptsam.register_backbone("vit_b", lambda **kw: None)


PLUGIN_SOURCE = """
from adaptsam.backbones.vit_b import VIT_TEST, build_sam_vit

def build(checkpoint=None, pretrained=True, download=False):
    '''A backbone that lives in a plugin.'''
    return build_sam_vit(VIT_TEST, name="fake_bb", spec=None, checkpoint=checkpoint, pretrained=pretrained,
                         download=download)
"""


def test_plugin_backbone_found_through_entry_point(plugin_path):
    make_distribution(plugin_path, "fake-adaptsam-plugin", {"adaptsam.backbones": {"fake_bb":
                      "fake_adaptsam_plugin_a:build"}}, {"fake_adaptsam_plugin_a.py": PLUGIN_SOURCE}, version="1.2.3")
    entry = registry.backbones.entry("fake_bb")
    assert (entry.origin, entry.version) == ("fake-adaptsam-plugin", "1.2.3")
    assert entry.description == "A backbone that lives in a plugin."
    model = adaptsam.create_model("fake_bb", policy="native", resolution=64)
    assert model.info.name == "fake_bb"


def test_broken_plugin_is_isolated_and_reported(plugin_path):
    make_distribution(plugin_path, "fake-adaptsam-broken", {"adaptsam.backbones": {"broken_bb":
                      "fake_adaptsam_plugin_broken:build"}},
                      {"fake_adaptsam_plugin_broken.py": "import a_module_that_does_not_exist\n"})
    with pytest.raises(PluginLoadError) as info:
        registry.backbones.get("broken_bb")
    message = str(info.value)
    assert "fake-adaptsam-broken" in message and "fake_adaptsam_plugin_broken:build" in message
    assert "a_module_that_does_not_exist" in message
    # the built-ins keep working, and listing shows the broken one as such
    assert adaptsam.create_model("vit_test", policy="native", resolution=64).resolution == 64
    entries = {e.name: e for e in registry.backbones.entries()}
    assert entries["broken_bb"].broken and entries["broken_bb"].description.startswith("BROKEN")
    assert "broken_bb" not in adaptsam.list_backbones()


def test_two_distributions_claiming_one_name_name_both(plugin_path):
    for dist in ("fake-adaptsam-one", "fake-adaptsam-two"):
        make_distribution(plugin_path, dist, {"adaptsam.backbones": {"same_name": "fake_adaptsam_plugin_a:build"}},
                          {"fake_adaptsam_plugin_a.py": PLUGIN_SOURCE})
    with pytest.raises(DuplicateNameError) as info:
        registry.backbones.get("same_name")
    assert "fake-adaptsam-one" in str(info.value) and "fake-adaptsam-two" in str(info.value)
    assert "same_name" in registry.backbones.conflicts()
    assert adaptsam.create_model("vit_test", policy="native", resolution=64) is not None  # others unaffected


def test_kill_switch_keeps_only_builtins(plugin_path, monkeypatch):
    make_distribution(plugin_path, "fake-adaptsam-plugin", {"adaptsam.backbones": {"fake_bb":
                      "fake_adaptsam_plugin_a:build"}}, {"fake_adaptsam_plugin_a.py": PLUGIN_SOURCE})
    monkeypatch.setenv("ADAPTSAM_NO_PLUGINS", "1")
    registry.refresh_all()
    assert "fake_bb" not in adaptsam.list_backbones()
    assert set(adaptsam.list_backbones()) >= BUILTIN_BACKBONES


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = ("import sys, adaptsam; heavy = [m for m in ('torch', 'segment_anything', 'adaptsam.backbones.vit_b') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
