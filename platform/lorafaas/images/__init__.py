"""Container images of LoRAFaaS: the function-container runtime image."""

from lorafaas.images.runtime_image import (
    IMAGE_REPO,
    RuntimeImageError,
    ensure_runtime_image,
    runtime_image_tag,
)

__all__ = ["IMAGE_REPO", "RuntimeImageError", "ensure_runtime_image", "runtime_image_tag"]
