"""The embedded warehouse: the raw sources in DuckDB, SQL transformations with data tests, and snapshots.

``tagops data build`` runs :func:`tagops.warehouse.build.build_snapshot`; training reads a snapshot with
:func:`tagops.warehouse.snapshots.load_snapshot`. Importing this package is inert: DuckDB is imported
inside the functions that use it.
"""
