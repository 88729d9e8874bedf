"""sparsebench: train, prune, export and benchmark timm image classifiers on CPUs."""

__version__ = "0.1.0"
