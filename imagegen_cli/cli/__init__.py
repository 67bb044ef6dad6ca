"""The Typer application: one module per command group, all thin over the core."""
