"""One module per group of `labelhouse` commands; `flows.cli.app` registers them."""
