"""The benchmark harness: `make bench`, `maas bench` or `python -m bench` from the project root (see bench/run.py)."""
