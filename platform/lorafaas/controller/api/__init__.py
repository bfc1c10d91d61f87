"""Thin HTTP handlers, one module per REST resource."""
