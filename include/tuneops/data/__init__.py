"""Validation, EDA, the prompt dataset builder, de-duplication, corrections export."""
