"""Airflow-only pieces: Assets, the approval operator, trainer operators, the notifier. Nothing below imports them."""
