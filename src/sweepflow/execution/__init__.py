"""Running one unit (a trial, a batch or a submit handler), without Prefect.

- ``trial``: the unit's spec and result models, and running it: a process, a
  ``call:``, or a ``submit:`` handler.
- ``warm``: warm starts (``preload:``), trials forked from a warm interpreter
  (``_zygote.py`` is that interpreter's script).
"""
