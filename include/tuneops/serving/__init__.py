"""The REST app, the inference log and feedback store, the serving manifests."""
