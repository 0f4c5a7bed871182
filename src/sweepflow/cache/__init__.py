"""Cache keys, code fingerprints, and the one owner of stored trial results.

- ``keys``: a trial's cache key and what it was made from.
- ``fingerprint``: which source files a trial runs, and a digest of their content.
- ``results``: reading and writing cached results; a fully cached sweep answered
  without starting anything; the marker of a job being run.
"""
