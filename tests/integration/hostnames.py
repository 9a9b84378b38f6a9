"""``[core] hostname_callable`` for test workers: each Celery worker names its task instances.

All workers run on this one machine, so the FQDN would not tell them apart.
"""

import os
import socket


def worker_name() -> str:
    return os.environ.get("TUNEOPS_WORKER_NAME") or socket.getfqdn()
