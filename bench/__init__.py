"""bench: measure which training tricks help a 3D brain-tumour segmenter, and by how much."""

__version__ = "0.1.0"
__all__ = ["__version__"]
