"""`python -m kickoff` runs the command line.

Nothing else: the command line itself is kickoff/cli.
"""

from kickoff.cli import main

main()
