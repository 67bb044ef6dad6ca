"""Allow ``python -m imagegen_cli``."""

from imagegen_cli.cli.app import main

if __name__ == "__main__":
    main()
