"""Opening an MLflow store for writing: MLflow's client, or the direct SQL route.

Opening takes seconds (importing MLflow, checking the schema); :func:`warm_up` does it
on a thread while the caller waits on something else.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from sweepflow.tracking._bulk import BulkStore
from sweepflow.tracking.uri import fast_commits, prepare_store, schema_head

__all__ = ["open_client", "open_direct", "prepare", "warm_up"]

# Opening a store (importing MLflow, checking the schema) takes seconds; warm_up does it
# on a thread while the caller waits on something else, and Tracker waits for it here.
_OPEN_LOCK = threading.Lock()
_CLOSED_AT_EXIT: set[str] = set()


def open_client(uri: str) -> Any:
    """MLflow's client for ``uri`` (importing MLflow: ~4 s of CPU)."""
    from mlflow import MlflowClient

    with _OPEN_LOCK:
        prepare(uri)
        client = MlflowClient(tracking_uri=uri)
        engine = getattr(client._tracking_client.store, "engine", None)  # built once per URI
        if engine is not None and uri not in _CLOSED_AT_EXIT:
            # Closing the connections folds SQLite's write-ahead log into mlflow.db, so
            # the file alone holds every run even when the process exits quickly.
            _CLOSED_AT_EXIT.add(uri)
            atexit.register(engine.dispose)
    return client


def open_direct(uri: str) -> BulkStore | None:
    """The store of ``uri`` written without MLflow (a SQL store of the installed
    MLflow's schema), or None (see :mod:`sweepflow.tracking._bulk`)."""
    with _OPEN_LOCK:
        prepare(uri)
    return BulkStore.open(uri, schema_head())


def prepare(uri: str) -> None:
    """Create the store's schema before anything fans out; commit without fsyncs."""
    prepare_store(uri)
    fast_commits(uri)


def warm_up(uri: str) -> threading.Thread:
    """Open the MLflow store of ``uri`` on a thread (e.g. while Prefect starts a server);
    a :class:`Tracker` made later finds it open. Errors surface in the Tracker."""

    def work() -> None:
        try:
            if open_direct(uri) is None:
                open_client(uri)
        except Exception:  # the Tracker opens it again and reports it
            return

    thread = threading.Thread(target=work, name="sweepflow-mlflow-open", daemon=True)
    thread.start()
    return thread
