"""Training and evaluation: losses, the training loop, metrics, the frozen-encoder embedding cache, DDP."""
