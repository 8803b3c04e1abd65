"""Developer tooling: ``make up`` (devstack.py) and local servers from PyPI wheels for it and
for tests (devservers.py). Never used by a deployed process. Sits on top, like the CLI."""
