"""The only home of argument parsing: one thin module per command (``main(argv) -> int``) that parses
its flags and calls the library, importing heavy modules lazily. ``cliutil`` holds the parser with
dicekit's error convention (one line, exit 2). The command table is in :mod:`dicekit.cli`."""
