"""Speed and memory benchmarks; each writes its table into benchmarks/README.md."""
