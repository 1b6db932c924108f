# make train && ./train     fine-tune (see README.md)
# make test                 every test; ends with "N passed, M failed"
# make bench                LoRA training step vs PyTorch, tokenizer vs Hugging Face, generation speed
# make train_gpu            ./train on an NVIDIA GPU (needs nvcc); make test_gpu, make bench_gpu

CC ?= gcc
CFLAGS ?= -O3
CFLAGS += -Wall -Wextra
# -march=native and OpenMP when the compiler has them; everything still builds without.
MARCH := $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
CFLAGS += $(MARCH)
OPENMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
CFLAGS += $(OPENMP)
LDLIBS = -lcjson -lm
SANITIZE = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# Debian's python3 (the one with python3-torch and python3-jinja2), not whatever is first on PATH
PYTHON = /usr/bin/python3

.PHONY: all test bench reference unicode_tables clean cjson base-model datasets test_gpu

all: train generate tokenizer

# cJSON is the one library we need: install it when we can, otherwise say how.
CJSON_HEADER = /usr/include/cjson/cJSON.h
cjson:
	@if [ ! -f $(CJSON_HEADER) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libcjson-dev"; \
	    apt-get install -y -q libcjson-dev >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q libcjson-dev >/dev/null); \
	  else \
	    echo "error: cJSON is missing; install it with: sudo apt-get install -y libcjson-dev" >&2; exit 1; \
	  fi; \
	fi

# train.c and generate.c link tokenizer.c as a library object (its own main left out)
LLMC = $(wildcard llmc/*.h)
TOKENIZER = tokenizer.c tokenizer.h unicode_tables.h $(LLMC)
TOKENIZER_LIB = tokenizer.o
TOKENIZER_ASAN = tokenizer_asan.o

tokenizer.o: $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) -DTRAIN_NO_MAIN -c tokenizer.c -o $@

tokenizer_asan.o: $(TOKENIZER) | cjson
	$(CC) $(SANITIZE) -Wall -Wextra $(OPENMP) -DTRAIN_NO_MAIN -c tokenizer.c -o $@

# ./train's demo run answers its sample prompts through ./generate, so `make train` builds both
train: train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson generate
	$(CC) $(CFLAGS) train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

train_asan: train.c $(TOKENIZER) $(TOKENIZER_ASAN) | cjson
	$(CC) $(SANITIZE) -Wall -Wextra $(OPENMP) train.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS)

test_train: test/test_train.c test/model_checks.h test/count_allocations.h train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/test_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test_train_asan: test/test_train.c test/model_checks.h test/count_allocations.h train.c $(TOKENIZER) $(TOKENIZER_ASAN) | cjson
	$(CC) $(SANITIZE) -Wall -Wextra $(OPENMP) test/test_train.c $(TOKENIZER_ASAN) -o $@ $(LDLIBS)

test_data: test/test_data.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/test_data.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

generate: generate.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) generate.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# the tokenizer's own command line: encode, decode, chat, train (see ./tokenizer --help)
tokenizer: $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) tokenizer.c -o $@ $(LDLIBS)

bench_train: test/bench_train.c train.c $(TOKENIZER) $(TOKENIZER_LIB) | cjson
	$(CC) $(CFLAGS) test/bench_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# test/test_tokenizer.sh and test/test_generate.sh build their own binaries (optimised and sanitised)
test: train generate test_train train_asan test_train_asan test_data
	@bash test/run_tests.sh

# Re-makes data/base from nothing: corpus, BPE tokenizer, pre-training (see data/README.md)
base-model: train tokenizer
	bash data/make_base_model.sh

# Re-writes the fine-tuning datasets in data/ (pirate.csv, pirate.jsonl, pirate_val.jsonl, prompts.txt)
datasets:
	python3 data/make_datasets.py

bench: bench_train
	@bash test/bench_train.sh
	@bash test/bench_tokenizer.sh
	@bash test/bench_generate.sh

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
            $(addprefix -Xcompiler ,-Wall -Wextra $(MARCH) $(OPENMP))
# make WERROR=1 ... turns every nvcc and host-compiler warning into an error (CI does)
NVCCFLAGS += $(if $(WERROR),-Werror all-warnings -Xcompiler -Werror)
GPU_LDLIBS = -lcublas $(LDLIBS)
GPU_SOURCES = train_gpu.c train_gpu.h train.cu train.c $(TOKENIZER) $(TOKENIZER_LIB)

ifneq ($(NVCC),)
train_gpu: $(GPU_SOURCES) | cjson
	$(NVCC) $(NVCCFLAGS) train_gpu.c train.cu $(TOKENIZER_LIB) -o $@ $(GPU_LDLIBS)

test_train_gpu: test/test_train_gpu.c test/model_checks.h test/count_allocations.h $(GPU_SOURCES) | cjson
	$(NVCC) $(NVCCFLAGS) test/test_train_gpu.c train.cu $(TOKENIZER_LIB) -o $@ $(GPU_LDLIBS)

bench_gpu: test/bench_gpu.c $(GPU_SOURCES) | cjson
	$(NVCC) $(NVCCFLAGS) test/bench_gpu.c train.cu $(TOKENIZER_LIB) -o $@ $(GPU_LDLIBS)

# prints "skip   no CUDA device: ..." and passes nothing where there is no GPU
test_gpu: test_train_gpu
	@./test_train_gpu
else
train_gpu test_train_gpu bench_gpu:
	@echo "error: $@ needs the CUDA compiler nvcc, which was not found; install the CUDA toolkit or run make NVCC=/path/to/nvcc" >&2; exit 1

test_gpu:
	@echo "skip   no nvcc: the GPU tests need the CUDA toolkit"
	@echo "0 passed, 0 failed"
endif

clean:
	rm -f tokenizer.o tokenizer_asan.o train train_asan test_train test_train_asan test_data bench_train generate generate_asan test_generate bench_generate tokenizer
	rm -f train_gpu test_train_gpu bench_gpu
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
	$(CC) $(SANITIZE) -fsanitize=float-cast-overflow -Wall -Wextra $(OPENMP) $< test/fuzz/replay.c $(TOKENIZER_ASAN) \
	    -o $@ $(LDLIBS)

fuzz_replay: $(FUZZ_REPLAY)

test_hostile: fuzz_replay train_asan
	@bash test/test_hostile.sh

# libFuzzer comes with clang: install it when we can, otherwise say how.
fuzz_clang:
	@if ! command -v $(FUZZ_CC) >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing clang (libFuzzer)"; \
	    apt-get install -y -q clang >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q clang >/dev/null); \
	  else \
	    echo "error: make fuzz needs clang with libFuzzer; install it with: sudo apt-get install -y clang" >&2; exit 1; \
	  fi; \
	fi

test/fuzz/bin/tokenizer_fuzz.o: $(TOKENIZER) | cjson fuzz_clang
	@mkdir -p test/fuzz/bin
	$(FUZZ_CC) $(subst fuzzer,fuzzer-no-link,$(FUZZ_FLAGS)) -Wall -Wextra -DTRAIN_NO_MAIN -c tokenizer.c -o $@

test/fuzz/bin/fuzz_%: test/fuzz/fuzz_%.c $(FUZZ_HEADERS) test/fuzz/bin/tokenizer_fuzz.o | cjson fuzz_clang
	$(FUZZ_CC) $(FUZZ_FLAGS) -Wall -Wextra $< test/fuzz/bin/tokenizer_fuzz.o -o $@ $(LDLIBS)

fuzz: $(FUZZ_TARGETS)
	@bash test/fuzz/run_fuzz.sh $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz_clean:
	rm -rf test/fuzz/bin

clean: fuzz_clean
