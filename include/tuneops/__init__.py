"""tuneops: the library behind the LLMOps DAGs. Importable and usable without Airflow."""

__version__ = "0.1.0"
