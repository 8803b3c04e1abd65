"""Logs and Prometheus metrics: how every process reports what it does. One Metrics object
per process, built at the edge and passed down. May import the pure core only."""
