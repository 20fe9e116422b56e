"""``python -m rrr_cli <command>``: how `rrr run` and the tests start a command as a process."""

from rrr_cli.main import main

main()
