# Convenience targets; the scripts are the source of truth.
.PHONY: bench-compare bench-compare-scale

# etcd 3.4 vs cairn: put, single-client put, ranges (3 rounds, medians); writes docs/benchmarks.md.
bench-compare:
	scripts/bench-compare.sh $(ARGS)

# The same plus the 1,000,000-key scale test (memory, sizes, restart time).
bench-compare-scale:
	scripts/bench-compare.sh --scale $(ARGS)
