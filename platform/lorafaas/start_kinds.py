"""The one vocabulary of start kinds: how the container that ran an activation was had.

The activation record's `startKind` annotation, the usage report, the CLI's `activation
list` and the README use these words and no others.
"""

from __future__ import annotations

COLD = "cold"
PREWARM = "prewarm"
PRELOADED = "preloaded"
WARM = "warm"
ADAPTER = "adapter"

# Each kind, from the slowest start to none, and what it loaded for the activation.
START_KINDS: dict[str, str] = {
    COLD: "a new container: libraries, backbone, adapter, tokenizer and kernels loaded "
          "for this activation",
    PREWARM: "a stem cell (libraries and backbone loaded ahead) given the function: adapter, "
             "tokenizer and kernels loaded for this activation",
    PRELOADED: "a container with the function fully loaded ahead of its first request "
               "(in a namespace container: its adapter, loaded there ahead)",
    ADAPTER: "a running namespace container (LORAFAAS_SHARED_CONTAINERS=namespace, the "
             "default) that loaded the function's adapter for this activation",
    WARM: "a container that had served the function already (or a running batch joined); "
          "in a namespace container, one that had the function's adapter loaded",
}
# What a container is while it is created or initialized; never an activation's kind.
STARTING = "starting"
# What the CLI shows for an activation that ran in no container (refused, or timed out
# before one was ready).
NO_CONTAINER = "-"
