"""One module per ``flipbench`` sub-command (see ``benchmark.cli.COMMANDS``)."""
