"""Resolution policies: how an R×R input reaches a backbone designed for another size (one per file)."""

from adaptsam.policies.base import ResolutionPolicy

__all__ = ["ResolutionPolicy"]
