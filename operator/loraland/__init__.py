"""loraland: fine-tune, score and serve many LoRA adapters of one base model on Kubernetes."""

__version__ = "0.1.0"
