"""The REST app, generation with a registered alias, the serving manifests."""
