"""The lease backstop process's entry point: ``python -m queue_core.worker.lease_backstop_main``
(lease_backstop.py starts it and explains it). A module of its own, so that running it does
not import lease_backstop.py a second time as ``__main__``."""

from queue_core.worker.lease_backstop import main

if __name__ == "__main__":
    main()
