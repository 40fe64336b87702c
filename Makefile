# otpd — the two commands a newcomer needs are `make run` and `make test`.
#   make run    install dependencies, build (release), start otpd on its defaults
#   make test   install dependencies, build (dev, warnings as errors), run every test, then
#               again under AddressSanitizer + UBSan (make asan)
#   make build  build the release binaries only
#   make bench  libotp micro-benchmarks, the HTTP load and the SMPP delivery benchmarks
#               (figures, not pass/fail)
#   make asan   build and run every test under AddressSanitizer + UBSan
#   make fuzz   build the libFuzzer targets (preset fuzz, clang) and run each for
#               FUZZ_SECONDS (default 60) from random seeds; `make test` runs them 10 s
#               each from seed 1 (FUZZ_SEED), the same inputs every time
#   make format apply clang-format to every source file

JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
export CTEST_OUTPUT_ON_FAILURE = 1

.PHONY: deps build run test asan fuzz bench format clean

deps:
	@scripts/install-deps

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS) --target otpd otpctl

run: build
	@mkdir -p otpd-data
	./build/release/apps/otpd $(if $(CONFIG),--config $(CONFIG),)

test: deps
	cmake --preset dev >/dev/null
	cmake --build --preset dev -j $(JOBS)
	ctest --preset dev -j $(JOBS) --timeout 600
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10 FUZZ_SEED=1
	$(MAKE) --no-print-directory asan

asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS) --timeout 900

# Only the fuzz targets and the libraries they link are built (build/fuzz/).
# New inputs land in build/fuzz/fuzz/work/<target>/corpus, crashes beside it.
fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$(FUZZ_SEED) ctest --preset fuzz -j $(JOBS) --timeout $$(( $(FUZZ_SECONDS) * 2 + 300 ))

bench: build
	cmake --build --preset release -j $(JOBS) --target otp_bench store_bench
	./build/release/bench/otp_bench
	./build/release/bench/store_bench
	bench/load.sh
	bench/smpp_load.sh

format:
	find include src apps bench tests -name '*.h' -o -name '*.cc' | xargs clang-format -i

clean:
	rm -rf build
