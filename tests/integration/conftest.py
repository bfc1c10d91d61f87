"""Fixtures of the integration tests that drive the platform's parts directly: a backbone
server for the invoker's pool, and one torch thread and the tokenizer for the runtime's
in-process tests.

torch and transformers are imported inside the fixtures, so that the tests that do not ask
for them never load them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.invoker.pool import BackboneMounts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from lorafaas.demo import DemoModels


@pytest.fixture
async def backbone(demo_models, short_dir: Path) -> AsyncIterator[BackboneMounts]:  # type: ignore[no-untyped-def]
    """A backbone server for the pool's containers."""
    endpoint = BackboneEndpoint("demo", short_dir / "bb" / "attach.sock",
                                Path("/dev/shm") / f"lorafaas-pool-{uuid.uuid4().hex[:8]}")
    server = BackboneServerProcess(endpoint, demo_models.backbone_dir)
    await server.start()
    yield BackboneMounts(endpoint.socket_path, endpoint.publish_dir)
    await server.stop()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core machine, two wait on each other and run 5× slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(demo_models: DemoModels) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_models.backbone_dir)
