from queue_core.cli.main import main

main()
