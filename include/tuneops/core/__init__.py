"""Settings, the artifact store and its locks, hashing, PII, landing roots, connections, MLflow wiring: what every runtime uses. Imports nothing else of tuneops."""
