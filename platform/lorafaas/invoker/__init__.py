"""The invoker: runs activations in Docker containers, one or more per LoRA function."""
