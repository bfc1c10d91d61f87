"""The SQL registry: namespaces and keys, actions, artifacts, activations."""
