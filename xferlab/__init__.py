"""xferlab: transfer-learning ablation studies with timm, Hydra and MLflow."""

__version__ = "0.1.0"
