"""postal's benchmarks: `make bench` (= `python -m bench`) measures the API, the workers and
their scaling against a Redis, gunicorn and workers it starts itself, and writes
docs/BENCHMARKS.md and docs/benchmarks.png. Every comparison is a ratio within one run."""
