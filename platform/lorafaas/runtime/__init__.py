"""The function-container runtime: OpenWhisk's /init and /run for one LoRA function.

It runs inside the runtime image and imports nothing of the controller, the invoker or
the backbone server: they share only the wire protocols in `lorafaas.wire`.
"""
