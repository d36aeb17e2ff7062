"""Command-line layer: one thin module per command, each calling one library function."""
