"""Enqueue: how application code creates and manages jobs (JobService). An INSERT commits in
Postgres first (group commit for concurrent callers); the Redis index follows in the
background, or after the caller's own transaction commits (committed_jobs.py). May import
the pure core and talks to the store and index through ports."""
