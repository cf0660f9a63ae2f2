"""`python -m floatsrv` runs the command-line interface."""

from floatsrv.cli import main

main()
