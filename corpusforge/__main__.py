"""`python -m corpusforge` is the CLI."""
from .cli import main

main()
