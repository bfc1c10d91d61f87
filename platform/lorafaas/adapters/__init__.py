"""PEFT adapter archives: unpacking and validation against a backbone (no torch needed)."""
