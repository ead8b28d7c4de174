# Fuzzing of the read path (spec/fuzz/). The text below is meant for the
# Makefile (add `fuzz` to .PHONY); until then: make -f Makefile -f spec/fuzz/fuzz.mk fuzz
# `make fuzz`: libFuzzer over dx_buf + dx_scan driven like lread.c against a
# model (build/fuzz_read, FUZZ_SECONDS on the seed corpus; new inputs go to
# build/fuzz-corpus, crashes to build/fuzz-artifacts), then the same time of
# reads over real sockets against a Lua model (spec/fuzz/read_model.lua;
# FUZZ_SEED picks the seed). FUZZ_SKIP_KNOWN=1 accepts the known bug's answer.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fsanitize-recover=pointer-overflow -Icsrc
FUZZ_ENV      = UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=spec/fuzz/ubsan.supp

build/fuzz_read: spec/fuzz/fuzz_read.c csrc/dx_buf.c csrc/dx_buf.h csrc/dx_scan.c csrc/dx_scan.h
	@mkdir -p build
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ spec/fuzz/fuzz_read.c csrc/dx_scan.c

fuzz: $(OUT) build/fuzz_read
	@mkdir -p build/fuzz-corpus build/fuzz-artifacts
	$(FUZZ_ENV) build/fuzz_read -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -dict=spec/fuzz/read.dict -artifact_prefix=build/fuzz-artifacts/ \
	  build/fuzz-corpus spec/fuzz/corpus/read
	FUZZ_SECONDS=$(FUZZ_SECONDS) LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" \
	  LUA_CPATH="./build/?.so;;" $(LUA) spec/fuzz/read_model.lua
