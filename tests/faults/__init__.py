"""The fault matrix: every dialect against every fault, through the real CLI."""
