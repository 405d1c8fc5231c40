"""The benchmark suite: `python -m bench` (add `--quick` for a run under 3 minutes).

Every figure is a ratio against a limit measured in the same run on the same machine, or an
absolute time with a target; see BENCHMARKS.md. Benchmarks are not tests: nothing here asserts.
"""
