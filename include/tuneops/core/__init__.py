"""What every runtime uses: settings, the artifact store and its locks, hashing, PII, landing roots,
connections, templates, lineage, MLflow wiring, and the embedded demo's sample data.
Imports nothing else of tuneops."""
