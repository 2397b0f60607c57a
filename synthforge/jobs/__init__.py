"""Scheduled synthesis jobs: a durable store, workers with leases, and Ray for more than one machine.

- :class:`~synthforge.jobs.store.JobStore`: jobs, schedules and logs in SQLite
  (WAL) or PostgreSQL, through SQLAlchemy; schema migrations on open.
- :class:`~synthforge.jobs.worker.Worker`: claims due jobs with a lease, heartbeats,
  runs each in a child process or a Ray task, retries crashes with back-off.
- :func:`~synthforge.jobs.partitioned.sample_partitioned`: sampling split into
  parquet parts written in parallel (Ray or local processes), committed atomically.

The command line is ``synthforge jobs …`` and ``synthforge worker``.
"""
