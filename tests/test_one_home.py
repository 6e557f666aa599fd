"""Issue 15's declarations: one home per default, test configurations declared by metadata, each part's
distribution and version in a cell's key, and a bench spec's required plugins."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import pytest

import adaptsam
from adaptsam import registry
from adaptsam.api import DEFAULT_POLICY
from adaptsam.bench.spec import PROMPTS, BenchSpec, Cell, preset_spec, spec_from_mapping
from adaptsam.engine.experiment import Experiment
from adaptsam.errors import ConfigError
from adaptsam.train_config import PROMPT_MODES, TrainConfig

BUDGET_FROM_TRAINING = ("steps", "batch_size", "lr", "adapter_lr", "prompt")


# -- one home per default ---------------------------------------------------------------------------------------
def test_cells_and_grids_take_their_training_defaults_from_train_config():
    cell = Cell("lite_medsam_test", "frozen", "native", 64, "synthetic")
    for name in BUDGET_FROM_TRAINING:
        assert getattr(BenchSpec(), name) == getattr(cell, name) == getattr(TrainConfig(), name), name
    assert Experiment().train == TrainConfig()


def test_a_grid_hands_its_whole_budget_to_every_cell():
    spec = BenchSpec(backbones=("lite_medsam_test",), adapters=spec_from_mapping({"adapters": "frozen"}).adapters,
                     datasets=("synthetic",), steps=7, batch_size=3, lr=2e-4, adapter_lr=3e-3, eval_limit=5,
                     throughput_batch=2, pretrained=False)
    budget = spec.budget()
    assert set(budget) == {"steps", "batch_size", "lr", "adapter_lr", "prompt", "eval_limit", "throughput_batch",
                           "pretrained"}
    for cell in spec.cells():
        assert cell.budget() == budget


def test_the_default_policy_has_one_home():
    assert inspect.signature(adaptsam.create_model).parameters["policy"].default == DEFAULT_POLICY
    assert Experiment().policy == DEFAULT_POLICY
    model = adaptsam.create_model("lite_medsam_test", pretrained=False, resolution=64)
    assert model.policy.name == DEFAULT_POLICY


def test_prompt_modes_have_one_home():
    from adaptsam.cli import build_parser
    from adaptsam.engine import batches

    assert batches.PROMPT_MODES is PROMPT_MODES
    assert PROMPTS[:-1] == PROMPT_MODES and PROMPTS[-1] == "none"
    parser = build_parser()
    for command, expected in (("train", PROMPT_MODES), ("eval", PROMPT_MODES), ("bench", PROMPTS)):
        sub = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001 - argparse keeps them here
        prompt = next(a for a in sub._actions if "--prompt" in a.option_strings)
        assert tuple(prompt.choices) == expected, command


def test_train_help_states_the_train_config_defaults():
    done = subprocess.run([sys.executable, "-m", "adaptsam", "train", "--help"], capture_output=True, text=True,
                          check=True, timeout=120)
    text = " ".join(done.stdout.split())
    assert f"optimiser steps (default {TrainConfig.steps})" in text
    assert f"(default {TrainConfig.adapter_lr:g})" in text


# -- test configurations by metadata ------------------------------------------------------------------------
def test_test_backbones_are_declared_not_named():
    assert set(registry.backbones.names(for_tests=True)) == {"vit_test", "tinyvit_test", "lite_medsam_test"}
    assert set(registry.backbones.names(for_tests=False)) >= {"vit_b", "vit_t", "lite_medsam"}


def test_all_leaves_out_a_declared_test_part_whatever_its_name():
    @registry.for_tests
    def tiny_for_ci(checkpoint=None, pretrained=True, download=False):
        return adaptsam.create_model("lite_medsam_test", pretrained=False)

    registry.backbones.register("tiny_for_ci", tiny_for_ci)
    try:
        assert "tiny_for_ci" in registry.backbones.names(for_tests=True)
        assert "tiny_for_ci" not in spec_from_mapping({"backbones": "all"}).backbones
        assert spec_from_mapping({"backbones": "tiny_for_ci"}).backbones == ("tiny_for_ci",)  # by name: allowed
    finally:
        registry.backbones.unregister("tiny_for_ci")


# -- distributions in cell keys ---------------------------------------------------------------------------------
def _peft_grid() -> BenchSpec:
    return spec_from_mapping({"backbones": "lite_medsam_test", "adapters": "frozen,peft_lora", "policies": "native",
                              "datasets": "synthetic", "resolutions": "64", "pretrained": False})


def test_each_cell_names_the_distribution_and_version_of_its_parts():
    pytest.importorskip("adaptsam_peft")
    cells = {c.adapter: c for c in _peft_grid().cells()}
    own = f"adaptsam {adaptsam.__version__}"
    assert cells["frozen"].parts == {"backbone": own, "adapter": own, "policy": own, "dataset": own}
    assert cells["peft_lora"].parts["adapter"] == registry.adapters.entry("peft_lora").source
    assert cells["peft_lora"].parts["adapter"].startswith("adaptsam-peft ")
    assert Cell.from_canonical(cells["peft_lora"].canonical()).key == cells["peft_lora"].key
    folder = BenchSpec(backbones=("lite_medsam_test",), datasets=("/some/folder",), pretrained=False,
                       adapters=_peft_grid().adapters[:1]).cells()[0]
    assert folder.parts["dataset"] == registry.datasets.entry("folder").source


def test_an_upgraded_plugin_changes_only_its_own_cells_keys(monkeypatch):
    pytest.importorskip("adaptsam_peft")
    before = {c.adapter: c.key for c in _peft_grid().cells()}
    entry = registry.adapters.entry("peft_lora")
    monkeypatch.setattr(entry, "version", entry.version + ".post1")
    after = {c.adapter: c.key for c in _peft_grid().cells()}
    assert after["frozen"] == before["frozen"]
    assert after["peft_lora"] != before["peft_lora"]


# -- required plugins ---------------------------------------------------------------------------------------
def test_a_required_plugin_that_is_installed_passes_under_any_spelling():
    pytest.importorskip("adaptsam_peft")
    spec = spec_from_mapping({"require": "Adaptsam_PEFT,adaptsam"}, preset_spec("quick"))
    assert spec.require == ("Adaptsam_PEFT", "adaptsam")


def test_a_missing_required_plugin_stops_the_grid_naming_it():
    with pytest.raises(ConfigError, match=r"requires plugins that are not installed: adaptsam-nothing\b.*"
                                          r"Installed: adaptsam "):
        spec_from_mapping({"require": ["adaptsam-nothing"]})


def test_bench_require_flag_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "adaptsam", "bench", "--require", "adaptsam-nothing", "--out",
                           str(tmp_path / "out"), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("adaptsam: error: The bench requires plugins that are not installed: "
                                "adaptsam-nothing") and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_require_is_part_of_the_spec_not_of_cell_keys():
    assert "require" in {f.name for f in dataclasses.fields(BenchSpec)}
    assert "require" not in Cell("lite_medsam_test", "frozen", "native", 64, "synthetic").canonical()
