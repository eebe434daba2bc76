"""Small helpers shared by the data, model and training code."""

from src.utils.io import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text"]
