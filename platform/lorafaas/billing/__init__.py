"""Metering and billing: the price sheet, the arithmetic of each activation's cost, reports."""
