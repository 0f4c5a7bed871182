"""The content-addressed artifact store: objects, their catalog, verify and gc.

- ``objects``: put a file or folder under its content digest, get it back by digest,
  short id (``<type>:<12 hex>``) or prefix; provenance in ``meta.json``.
- ``digests``: the digest of a file or folder; ``layout``: where things live.
- ``catalog``: the SQLite index (atoms, ``made_from`` edges, cache entries, roots),
  written only by the driver and rebuilt from files by ``reindex``; lineage.
- ``leases``: live runs' claims that ``gc`` respects.
- ``verify``: re-hash every object, quarantine corrupt ones; ``gc``: delete old
  unreachable objects.
"""

from sweepflow.store.catalog import Catalog
from sweepflow.store.errors import AmbiguousAtom, GcRefused, StoreError, UnknownAtom
from sweepflow.store.gc import GcReport, GcRow, gc
from sweepflow.store.leases import Lease, hold
from sweepflow.store.objects import Atom, AtomMeta, ObjectStore, Provenance
from sweepflow.store.verify import Corrupt, verify

__all__ = [
    "AmbiguousAtom",
    "Atom",
    "AtomMeta",
    "Catalog",
    "Corrupt",
    "GcRefused",
    "GcReport",
    "GcRow",
    "Lease",
    "ObjectStore",
    "Provenance",
    "StoreError",
    "UnknownAtom",
    "gc",
    "hold",
    "verify",
]
