"""`python -m tagops.cli`: the same entry point as the `tagops` console script."""

from tagops.cli import main

main()
