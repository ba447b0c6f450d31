"""`python -m rsrag.cli`: the same as the `rsrag` command."""

from rsrag.cli import main

main()
