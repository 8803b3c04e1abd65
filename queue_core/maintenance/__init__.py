"""Maintenance: the reconciler (repairs Redis from Postgres, rescues expired leases, applies
retention, enqueues periodic jobs) and the operations on the queue as a whole (stats, bulk
retry, purge). May import the pure core and enqueue; talks to the store and the index
through ports."""
