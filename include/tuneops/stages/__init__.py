"""The flows, one module per DAG: what each task calls, and what the CLI calls in the same order.

Stages sit on top of the runtime packages and hand each other the typed contracts of
``tuneops.contracts``; nothing below imports them.
"""
