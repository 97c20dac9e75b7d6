# Benchmarks (issue 7), included from the top Makefile (which defines BIN, BUILD_CACHE,
# LLAMA_VERSION and the `model` target).
#   make bench        everything, under 30 minutes on 2 cores  -> bench/results/<timestamp>.md/.json
#   make bench-quick  a few cases of each section, under 5 minutes
#   make bench-decoding  0.5B and 1.5B with and without prompt lookup / the 0.5B drafting (issue 10)
#                     -> bench/results/decoding-latest.md/.json
#   make bench-peer   build llama.cpp's llama-server once per machine (about 8 minutes on 2 cores);
#                     both targets use it; if it cannot be built the report says "peer skipped".
# The one-time peer build is, like the llama-cpp-python wheel, not part of the time limits.
# Environment: HUSHCODE_BENCH_DATA (HumanEval files, default ../shared/bench-data),
# HUSHCODE_BENCH_CACHE (wheels, sources, run logs; default ~/.cache/hushcode-bench),
# BENCH_MODEL (a registry name, default qwen2.5-coder-0.5b-instruct), BENCH_ARGS (extra flags).

.PHONY: bench bench-quick bench-peer bench-decoding

bench-peer: setup
	@PYTHON=$(BIN)/python BUILD_CACHE=$(BUILD_CACHE) bench/build_peer.sh $(LLAMA_VERSION) >/dev/null \
	  || echo "bench: llama-server could not be built; the report will run without the peer"

bench: model bench-peer
	BENCH_COMMAND="make bench" $(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: model bench-peer
	BENCH_COMMAND="make bench-quick" $(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-decoding: model model-large
	$(BIN)/python -m bench.decoding $(BENCH_ARGS)
