"""Bench specs: expansion of 'all', exclusion, stable keys, YAML, presets."""

from __future__ import annotations

import pytest

import adaptsam
from adaptsam.bench.spec import BenchSpec, Cell, preset_spec, spec_from_mapping, spec_from_yaml
from adaptsam.errors import UnknownNameError


def test_all_expands_to_everything_registered():
    spec = spec_from_mapping({"adapters": "all", "backbones": "all", "policies": "all"})
    assert {a.name for a in spec.adapters} == set(adaptsam.list_adapters())
    assert set(spec.backbones) == {b for b in adaptsam.list_backbones() if not b.endswith("_test")}
    assert set(spec.policies) == set(adaptsam.list_policies())


def test_unknown_names_fail_before_running_with_suggestions():
    with pytest.raises(UnknownNameError, match="Did you mean 'lora'"):
        spec_from_mapping({"adapters": "lorra"})


def test_exclude_rules_drop_cells(tiny_spec):
    assert len(tiny_spec.cells()) == 8
    spec = spec_from_mapping({"exclude": [{"adapter": "lora", "policy": "upsample"}]}, tiny_spec)
    assert len(spec.cells()) == 6
    with pytest.raises(ValueError, match="unknown fields"):
        spec_from_mapping({"exclude": [{"adaptr": "lora"}]}, tiny_spec)


def test_keys_depend_on_config_not_on_labels():
    a = Cell("lite_medsam", "lora", "native", 64, "kvasir_seg", adapter_cfg={"rank": 8, "alpha": 8})
    b = Cell("lite_medsam", "lora", "native", 64, "kvasir_seg", adapter_cfg={"alpha": 8, "rank": 8}, adapter_label="x")
    c = Cell("lite_medsam", "lora", "native", 64, "kvasir_seg", adapter_cfg={"rank": 4, "alpha": 8})
    assert a.key == b.key != c.key
    assert Cell.from_canonical(a.canonical()).key == a.key


def test_yaml_spec_with_adapter_variants(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("preset: quick\nadapters:\n  - frozen\n  - {name: lora, cfg: {rank: 16}, label: lora-r16}\n"
                    "resolutions: [64]\nseeds: 0,1\n")
    spec = spec_from_yaml(path)
    assert [a.display for a in spec.adapters] == ["frozen", "lora-r16"]
    assert spec.seeds == (0, 1) and spec.name == "quick (modified)"


def test_quick_preset_says_which_data_it_uses(monkeypatch, tmp_path):
    monkeypatch.delenv("ADAPTSAM_DATA", raising=False)
    spec = preset_spec("quick")
    assert spec.datasets == ("synthetic",) and "ADAPTSAM_DATA is not set" in spec.note
    assert all(c.backbone == "lite_medsam" and c.pretrained for c in spec.cells())
    monkeypatch.setenv("ADAPTSAM_DATA", str(tmp_path))
    assert "no kvasir_seg" in preset_spec("quick").note


def test_spec_validation():
    with pytest.raises(ValueError, match="prompt"):
        BenchSpec(prompt="scribble")
    with pytest.raises(ValueError, match="at least one"):
        BenchSpec(seeds=())


def test_adapter_label_survives_the_store_but_not_the_key(tmp_path):
    from adaptsam.bench.store import ResultStore

    labelled = Cell(backbone="vit_test", adapter="lora", policy="native", resolution=64, dataset="synthetic",
                    adapter_cfg={"train_decoder": True}, adapter_label="lora+decoder")
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.register([labelled])
        row = store.rows()[0]
    assert row.cell.adapter_display == "lora+decoder"
    assert row.cell.key == labelled.key == Cell.from_canonical(labelled.canonical()).key
