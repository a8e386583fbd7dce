#!/bin/sh
# Entry point of `make run`: see deploy/demo.py.
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$@"
