"""Evaluation, safety probes, the gate, its report, compression variants and metric modules."""
