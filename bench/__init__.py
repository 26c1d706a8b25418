"""Performance benchmark of django-triggers: ``python -m bench [--db postgres] [--quick]``.

It measures, on a dedicated database, the latency of one fire as a session
grows, fire throughput from several processes, the per-hop cost of a chain
of cascading tasks on a real Celery worker, and the memory a firing process
needs in a large session. See ``bench/README.md``.
"""
