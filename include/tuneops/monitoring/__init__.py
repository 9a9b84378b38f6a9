"""Drift and health of the live model, its report and alerts."""
