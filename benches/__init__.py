"""Benchmarks against the Rust Wizer: `bash benches/run.sh` (see benches/README.md)."""
