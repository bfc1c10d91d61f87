"""LoRAFaaS: a serverless platform for LoRA fine-tuned LLMs sharing one backbone."""

__version__ = "0.1.0"
