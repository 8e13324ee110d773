"""One module per command: argparse + a call into the library."""
