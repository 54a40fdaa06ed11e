"""scalectl: reuse pools of LoRA adapters (SCALE-LoRA as software)."""

__version__ = "0.1.0"
