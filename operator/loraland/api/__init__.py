"""Pydantic models of every spec, status and file format: the one source of truth.

This package is the bottom layer: it imports nothing else from loraland except
:mod:`loraland.storage.uri`-free constants, and nothing heavy (no torch, no kubernetes).
"""
