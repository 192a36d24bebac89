"""``python -m partition``: tokenise and partition a TAG folder (see :mod:`partition.build`)."""
from .cli import main

main()
