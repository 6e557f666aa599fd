"""The training loop: it learns, it is reproducible, the cache changes nothing but speed, it checkpoints."""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam.data import LowResDataset, open_dataset
from adaptsam.engine import train as train_module
from adaptsam.engine.train import TrainConfig, fit, lr_factor


def _data(n: int = 8, split: str = "train") -> LowResDataset:
    return LowResDataset(open_dataset("synthetic", split, n=n, size=64), 64, train=split == "train")


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.adapter.trainable_state_dict(model).items()}


def test_training_lowers_the_loss():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="decoder")
    result = fit(model, _data(), TrainConfig(steps=30, batch_size=4, lr=1e-3, log_every=5, progress=False))
    losses = [h["loss"] for h in result.history]
    assert result.steps == 30 and losses[-1] < losses[0]
    assert not model.training  # left in eval mode


def test_same_seed_same_weights_other_seed_other_weights():
    runs = []
    for seed in (0, 0, 1):
        model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
        fit(model, _data(), TrainConfig(steps=4, seed=seed, progress=False))
        runs.append(_weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_dataloader_workers_give_the_very_batches_of_the_training_process():
    """Augmented samples are a function of (seed, epoch, index); workers are told the epoch with each index."""
    runs = []
    for workers in (0, 2):
        model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
        data = _data(6)
        assert data.augment  # the encoder trains: augmentation is on, so epochs differ
        out = fit(model, data, TrainConfig(steps=4, batch_size=4, num_workers=workers, log_every=1, progress=False))
        runs.append(([h["loss"] for h in out.history], out.images_seen, _weights(model)))
    (losses0, seen0, weights0), (losses2, seen2, weights2) = runs
    assert losses0 == losses2 and seen0 == seen2 == 16  # 4 steps cross an epoch boundary (6 images)
    assert all(torch.equal(weights0[k], weights2[k]) for k in weights0)


def test_workers_option_is_checked():
    from adaptsam.errors import ConfigError

    with pytest.raises(ConfigError, match="num_workers to be an integer >= 0"):
        TrainConfig(num_workers=-1)


def test_cached_embeddings_give_identical_training():
    results = []
    for cache in (True, False):
        model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="decoder")
        out = fit(model, _data(), TrainConfig(steps=5, cache=cache, augment=False, progress=False))
        results.append((out, _weights(model)))
    (cached, a), (uncached, b) = results
    assert cached.cached and cached.cache_misses == 8 and not uncached.cached
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cache_is_refused_when_the_encoder_trains():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    with pytest.raises(ValueError, match="frozen image encoder"):
        fit(model, _data(), TrainConfig(steps=1, cache=True, progress=False))


def test_frozen_trains_nothing():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="frozen")
    assert fit(model, _data(), TrainConfig(steps=5, progress=False)).steps == 0


def test_gradient_checkpointing_gives_the_same_update():
    results = []
    for checkpointing in (False, True):
        model = adaptsam.create_model("vit_test", policy="native", resolution=64, adapter="lora")
        fit(model, _data(), TrainConfig(steps=2, grad_checkpointing=checkpointing, progress=False))
        results.append(_weights(model))
    assert all(torch.allclose(results[0][k], results[1][k], atol=1e-6) for k in results[0])
    assert "forward" not in vars(model.image_encoder.blocks[0])  # restored after training


def test_interrupt_saves_the_adapter(tmp_path, monkeypatch):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    calls = {"n": 0}
    original = train_module.run_batch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(model, _data(), TrainConfig(steps=10, progress=False), out_dir=tmp_path)
    reloaded = adaptsam.load_adapter(tmp_path / "adapter.safetensors")
    assert all(torch.equal(v, _weights(model)[k]) for k, v in _weights(reloaded).items())


def test_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[50] < factors[20] and factors[-1] < 0.01


def test_bad_budget_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="prompt"):
        TrainConfig(prompt="scribble")
