"""Allow ``python -m imagegen_cli``."""

from imagegen_cli.cli.app import console_main

if __name__ == "__main__":
    console_main()
