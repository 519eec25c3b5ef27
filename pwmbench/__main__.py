"""`python -m pwmbench` runs the command-line interface."""

from pwmbench.cli import main

if __name__ == "__main__":
    main()
