"""Adapters: ways to adapt a SamModel (one per file), all registered through entry points."""

from adaptsam.adapters.base import Adapter, AdapterConfig, build_adapter

__all__ = ["Adapter", "AdapterConfig", "build_adapter"]
