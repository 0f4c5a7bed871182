"""MLflow as the record of runs.

- ``uri``: where records live (tracking URI, artifact root, experiments).
- ``writer``: the flow's writer of parent and trial runs, params, metrics, artifacts.
- ``rules``: MLflow's rules (key names, value lengths, default tags), applied once.
- ``records``: the new, finished and stale runs the writer hands to a route.
- ``_bulk`` / ``_client``: the two routes, SQL rows (many runs per transaction, no
  ``import mlflow``) or MLflow's client; they store the same rows
  (``tests/test_tracking.py``).
- ``stores``: opening a store and choosing its route.
- ``snapshot``: one trial run as a frozen snapshot (for analysis).
"""
