"""Valid but odd inputs get their documented handling (the other half of the bad-input battery), plus a few
cases run as real subprocesses to prove the exit status and that no traceback reaches the user."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from adaptsam.data.folder import ImageMaskFolder, read_rgb, to_8bit

from .bad_input_world import TINY_MODEL, World
from .test_bad_inputs import run_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("odd_inputs"))


def _train(w: World, *extra: str, data, out, steps: int = 0) -> list[str]:
    return ["train", *TINY_MODEL, "--data", str(data), "--steps", str(steps), "--batch-size", "2", "--no-progress",
            "--out", str(out), *extra]


def test_images_without_objects_are_left_out_of_prompted_training_and_counted(world, capsys):
    out = world.path("some_empty")
    code, _, err = run_cli(_train(world, "--adapter", "decoder", data=world.some_empty(), out=out), capsys)
    assert code == 0, err
    assert "adaptsam: warning: 2 of 4 training images of some_empty/train hold no object" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["skipped_images"] == 2
    assert metrics["n_images"] == 1 and metrics["n_skipped"] == 1  # the empty test image is counted, not scored


def test_fit_skips_batches_with_nothing_to_prompt_and_stops_when_none_is_usable(world):
    import adaptsam
    from adaptsam.data import LowResDataset
    from adaptsam.engine.train import TrainConfig, fit
    from adaptsam.errors import DataError

    model = adaptsam.create_model("lite_medsam_test", pretrained=False, policy="native", resolution=64,
                                  adapter="decoder")
    empty = LowResDataset(ImageMaskFolder(world.empty_masks(), "train"), 64, train=True)
    with pytest.raises(DataError, match="empty_masks/train.*holds an object"):
        fit(model, empty, TrainConfig(steps=1, batch_size=1, progress=False))
    mixed = LowResDataset(ImageMaskFolder(world.some_empty(), "train"), 64, train=True, augment=False)
    result = fit(model, mixed, TrainConfig(steps=3, batch_size=1, progress=False))
    assert result.steps == 3 and result.skipped_batches > 0  # 2 of 4 images usable: 3 steps must skip one


def test_sixteen_bit_images_are_scaled_by_percentiles_not_clipped(world, capsys, monkeypatch):
    from adaptsam.data import folder

    monkeypatch.setattr(folder, "_warned_high_depth", [])  # said once per process: make this the first time
    code, _, err = run_cli(["eval", *TINY_MODEL, "--adapter", "frozen", "--data", str(world.sixteen_bit()),
                            "--no-progress", "--out", str(world.path("16bit"))], capsys)
    assert code == 0, err
    assert "adaptsam: warning:" in err and "more than 8 bits" in err and "percentiles" in err
    path = world.sixteen_bit() / "images" / "s0.png"
    assert Image.open(path).mode.startswith("I")
    rgb = read_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 100  # PIL's convert gives all 255


def test_to_8bit_maps_percentiles_to_the_full_range():
    ramp = np.arange(1000, 5000, dtype=np.uint16).reshape(40, 100)
    out = to_8bit(ramp)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # monotone: order kept
    assert not to_8bit(np.full((4, 4), 7000, np.uint16)).any()  # constant → zeros, not white
    floats = np.array([[0.0, 0.25], [0.5, np.nan]])
    assert to_8bit(floats, (0, 100)).tolist() == [[0, 128], [255, 0]]  # NaN → the low end


def test_labelled_masks_of_0_and_255_warn_that_255_means_ignore(world):
    dataset = ImageMaskFolder(world.labelled_0_255(), "train")
    with pytest.warns(UserWarning, match="255 means ignore"):
        dataset[0]
    with _no_warnings():
        dataset[1]  # said once per dataset


def test_yaml_learning_rate_written_as_1e_4_is_a_number(world, capsys):
    config = world.yaml("lr_text", "train:\n  lr: 1e-4\n  adapter_lr: 2e-3\n")
    out = world.path("lr_text")
    code, _, err = run_cli(_train(world, "--adapter", "decoder", "--config", str(config), data=world.good_data(),
                                  out=out), capsys)
    assert code == 0, err
    train = json.loads((out / "metrics.json").read_text())["experiment"]["train"]
    assert train["lr"] == 1e-4 and train["adapter_lr"] == 2e-3


def test_force_overwrites_a_finished_run(world, capsys):
    out = world.path("forced")
    args = _train(world, "--adapter", "decoder", data=world.good_data(), out=out)
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--force" in err
    assert run_cli([*args, "--force"], capsys)[0] == 0


def test_resolution_zero_is_not_the_design_size():
    import adaptsam
    from adaptsam.errors import AdaptsamError

    with pytest.raises(AdaptsamError, match="Resolution 0"):
        adaptsam.create_model("vit_test", policy="native", resolution=0)


class _no_warnings:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@pytest.mark.parametrize("argv, expect", [
    (["train", *TINY_MODEL, "--adapter", "lora", "--adapter-cfg", "rank=0", "--out", "{tmp}/o"], "rank"),
    (["bench", "--seeds", "x", "--dry-run", "--out", "{tmp}/b"], "seeds"),
], ids=["adapter-cfg", "bench-seeds"])
def test_real_process_exits_2_without_traceback(argv, expect, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    env = {**os.environ, "ADAPTSAM_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    entry = "import sys; from adaptsam.cli import main; sys.exit(main(sys.argv[1:]))"  # the console script's body
    proc = subprocess.run([sys.executable, "-c", entry, *argv], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("adaptsam: error:")]
    assert len(lines) == 1 and expect in lines[0].lower(), proc.stderr
