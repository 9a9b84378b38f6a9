"""The base model (resolved, or built for the embedded demo), loading and generation."""
