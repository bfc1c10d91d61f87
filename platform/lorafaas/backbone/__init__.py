"""The backbone server: loads a backbone once per accelerator and publishes it read-only."""
