"""The worker (JobRunnerService): claims jobs (claimer.py), holds their leases (leases.py),
runs handlers (executor.py), writes outcomes in batches (outcomes.py), and claims ahead
while jobs are short (prefetch.py). May import the pure core and talks to the store and the
index through ports."""
