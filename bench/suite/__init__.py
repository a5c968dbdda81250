"""The orchestration side of `bench/run.py` (project venv only): inputs, workers, workloads, report, charts."""
