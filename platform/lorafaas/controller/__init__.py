"""The controller: OpenWhisk-compatible REST API over the registry, in front of the invoker."""
