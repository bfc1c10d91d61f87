"""Without backbone sharing: the container loads its own copy of the backbone.

What an OpenWhisk or InstaInfer function does on a cold start, and what the evaluation's
baselines run (`LORAFAAS_BACKBONE_SHARING=off`). The checkpoint is read from its read-only
mount into the process's private memory, not memory-mapped: a mapped checkpoint would share
the host's page cache between containers, which is backbone sharing by another name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

# The backbone server's default serving dtype (its `--dtype`), so that both modes compute
# with the same weights and generate the same tokens.
SERVING_DTYPE = torch.float32


def load_private_backbone(checkpoint_dir: Path) -> PreTrainedModel:
    """The backbone loaded from its checkpoint folder into this process's own memory."""
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), dtype=SERVING_DTYPE,
                                                 local_files_only=True, disable_mmap=True)
    model.eval()
    return model
