"""Constants of the runtime protocol shared by the invoker and the in-container runtime."""

# OpenWhisk's log sentinel: the runtime prints it after each activation.
SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
# Response header of /run carrying the runtime's timings (JSON, milliseconds).
METRICS_HEADER = "X-LoRAFaaS-Metrics"
RUNTIME_SOCKET_NAME = "runtime.sock"
# Response header of a single /run that asked for its logs: the body is
# `{"result", "timings", "logs"}` rather than the bare result.
ENVELOPE_HEADER = "X-LoRAFaaS-Envelope"
