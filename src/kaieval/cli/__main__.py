"""``python -m kaieval.cli``: the same ``kai`` command.

Guarded: vLLM starts its engine in a spawned process, which imports this module
again as ``__mp_main__``; unguarded, the child would run the command a second time.
"""

from kaieval.cli import main

if __name__ == "__main__":
    main()
