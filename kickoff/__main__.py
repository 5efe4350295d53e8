"""`python -m kickoff` runs the command line."""

from kickoff.cli import main

main()
