"""``python -m kaieval.cli``: the same ``kai`` command."""

from kaieval.cli import main

main()
