"""``python -m vizkit`` runs the CLI (used where the console script is not on PATH)."""

from .cli import main

main()
