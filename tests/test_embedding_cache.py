"""The embedding cache is keyed by what determines an embedding: image content and the model side."""

from __future__ import annotations

import torch

from adaptsam.api import create_model
from adaptsam.engine.cache import EmbeddingCache


def _model(resolution: int = 32, policy: str = "native", seed: int = 0):
    return create_model("lite_medsam_test", pretrained=False, policy=policy, resolution=resolution, seed=seed,
                        adapter="decoder").eval()


def test_same_content_is_encoded_once_whatever_its_id_or_folder(tmp_path):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    first = EmbeddingCache(_model(), directory=tmp_path)
    a = first.embeddings(images, ["x/1", "x/2", "x/3"])
    second = EmbeddingCache(_model(), directory=tmp_path)  # another cell of the bench: served from disk
    b = second.embeddings(images, ["other-folder/1", "other-folder/2", "other-folder/3"])
    assert first.misses == 3 and second.misses == 0 and second.hits == 3
    assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.allclose(a, _model().encode(images), atol=1e-5)


def test_different_content_under_one_name_never_shares(tmp_path):
    cache = EmbeddingCache(_model(), directory=tmp_path)
    one = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    two = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    cache.embeddings(one, ["kvasir_seg/test/0001"])
    cache.embeddings(two, ["kvasir_seg/test/0001"])  # same dataset name and id, another folder's image
    assert cache.misses == 2 and cache.hits == 0


def test_the_model_side_is_part_of_the_key(tmp_path):
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    EmbeddingCache(_model(), directory=tmp_path).embeddings(images)
    for other in (_model(seed=1), _model(policy="upsample")):  # other random weights; another policy
        cache = EmbeddingCache(other, directory=tmp_path)
        cache.embeddings(images)
        assert cache.misses == 1
