"""Adapters: torch-free bookkeeping (registry, paths), loading and validation, batched LoRA."""
