"""Plugin sets of the authorities that use siegel."""
