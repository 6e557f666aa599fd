"""The PEFT methods this plugin registers: one entry per method, nothing else to edit to add one.

Each entry names the PEFT config class, the paper, the adaptsam defaults that differ from PEFT's (where
PEFT's defaults do not fit SAM's small encoder widths: TinyViT stages are 64-320 wide, the tiny test
backbones 32-48), values fixed by the method (DoRA is LoRA with ``use_dora``), and PEFT fields that are
left out because adaptsam decides them (see ``options.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PeftMethod:
    name: str  # the adaptsam adapter name
    config: str  # the PEFT config class, e.g. "LoraConfig"
    summary: str  # one line for ``adaptsam list``
    paper: str
    defaults: dict[str, Any] = field(default_factory=dict)  # adaptsam's defaults where PEFT's don't fit SAM
    fixed: dict[str, Any] = field(default_factory=dict)  # set by the method, not an option
    hidden: tuple[str, ...] = ()  # method-specific PEFT fields not offered as options
    supports_merge: bool = True


METHODS: dict[str, PeftMethod] = {m.name: m for m in (
    PeftMethod("peft_lora", "LoraConfig", "LoRA (PEFT's reference implementation) on whole encoder linears",
               "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022",
               hidden=("use_dora",)),
    PeftMethod("peft_dora", "LoraConfig", "DoRA: LoRA on the direction plus a trained magnitude per output",
               "Liu et al., DoRA: Weight-Decomposed Low-Rank Adaptation, ICML 2024",
               fixed={"use_dora": True}),
    PeftMethod("peft_loha", "LoHaConfig", "LoHa: low-rank Hadamard product updates (FedPara)",
               "Hyeon-Woo et al., FedPara: Low-Rank Hadamard Product for Communication-Efficient Federated "
               "Learning, ICLR 2022"),
    PeftMethod("peft_lokr", "LoKrConfig", "LoKr: Kronecker-product updates (LyCORIS)",
               "Yeh et al., Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to Model "
               "Evaluation, ICLR 2024"),
    PeftMethod("peft_ia3", "IA3Config", "IA3: learned per-channel rescaling of outputs (MLP: of inputs)",
               "Liu et al., Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context "
               "Learning, NeurIPS 2022"),
    PeftMethod("peft_vera", "VeraConfig", "VeRA: frozen shared random projections, trained scaling vectors",
               "Kopiczko et al., VeRA: Vector-based Random Matrix Adaptation, ICLR 2024",
               hidden=("save_projection",)),
    PeftMethod("peft_oft", "OFTConfig", "OFT: block-diagonal orthogonal rotation of each weight",
               "Qiu et al., Controlling Text-to-Image Diffusion by Orthogonal Finetuning, NeurIPS 2023"),
    PeftMethod("peft_boft", "BOFTConfig", "BOFT: orthogonal fine-tuning with butterfly-factorised rotations",
               "Liu et al., Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization, ICLR 2024"),
    PeftMethod("peft_fourierft", "FourierFTConfig", "FourierFT: updates as a few trained 2-D Fourier coefficients",
               "Gao et al., Parameter-Efficient Fine-Tuning with Discrete Fourier Transform, ICML 2024",
               defaults={"n_frequency": 1000}),
    PeftMethod("peft_hra", "HRAConfig", "HRA: a chain of trained Householder reflections of each weight",
               "Yuan et al., Bridging The Gap between Low-rank and Orthogonal Adaptation via Householder "
               "Reflection Adaptation, NeurIPS 2024"),
    PeftMethod("peft_randlora", "RandLoraConfig", "RandLoRA: full-rank updates from frozen random bases",
               "Albert et al., RandLoRA: Full-rank parameter-efficient fine-tuning of large models, ICLR 2025",
               hidden=("save_projection",)),
    PeftMethod("peft_delora", "DeloraConfig", "DeLoRA: LoRA with normalised, bounded-norm updates",
               "Bini et al., Decoupling Angles and Strength in Low-rank Adaptation, ICLR 2025"),
    PeftMethod("peft_road", "RoadConfig", "RoAd: trained 2-D rotations of output pairs",
               "Liao et al., 2D Rotary Adaptation for Efficient Parameter-Efficient Fine-Tuning, 2024",
               defaults={"group_size": 16}),
    PeftMethod("peft_miss", "MissConfig", "MiSS: one shared trained shard expanded over each weight",
               "Kang et al., MiSS: Revisiting the Trade-off in LoRA with an Efficient Shard-Sharing Structure, "
               "2024", defaults={"r": 16}),
    PeftMethod("peft_shira", "ShiraConfig", "SHiRA: a sparse trained subset of each weight (seeded mask)",
               "Bhardwaj et al., Sparse High Rank Adapters, NeurIPS 2024",
               defaults={"r": 8, "random_seed": 0}),
)}
