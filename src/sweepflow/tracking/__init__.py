"""MLflow as the record of runs.

- ``uri``: where records live (tracking URI, artifact root, experiments).
- ``writer``: the flow's writer of parent and trial runs, params, metrics, artifacts.
- ``_bulk``: the same rows written with SQLAlchemy Core, many runs per transaction.
- ``snapshot``: one trial run as a frozen snapshot (for analysis).
"""
