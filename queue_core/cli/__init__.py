"""The ``hybridq`` command: parser.py defines every subcommand and option; main.py runs one
function per subcommand, ops.py the operator commands (stats, top, retry, purge). Sits on
top: may import every part of the engine, and the API (for ``hybridq api``)."""
