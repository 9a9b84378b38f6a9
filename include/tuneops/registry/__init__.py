"""The MLflow Model Registry: versions, aliases, governance, the model card, the pyfunc flavour."""
