# make train && ./train     fine-tune (see README.md)
# make test                 every test; ends with "N passed, M failed"
# make bench                LoRA training step vs PyTorch, tokenizer vs Hugging Face, generation speed

CC ?= gcc
CFLAGS ?= -O3
CFLAGS += -Wall -Wextra
# -march=native and OpenMP when the compiler has them; everything still builds without.
CFLAGS += $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
OPENMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
CFLAGS += $(OPENMP)
LDLIBS = -lcjson -lm
SANITIZE = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# Debian's python3 (the one with python3-torch and python3-jinja2), not whatever is first on PATH
PYTHON = /usr/bin/python3

.PHONY: all test bench reference unicode_tables clean cjson

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

# train.c and generate.c use tokenizer.c as a library (its own main left out)
TOKENIZER = tokenizer.c tokenizer.h unicode_tables.h
TOKENIZER_LIB = -DTOKENIZER_NO_MAIN tokenizer.c

train: train.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

train_asan: train.c $(TOKENIZER) | cjson
	$(CC) $(SANITIZE) -Wall -Wextra $(OPENMP) train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test_train: test/test_train.c train.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) test/test_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test_train_asan: test/test_train.c train.c $(TOKENIZER) | cjson
	$(CC) $(SANITIZE) -Wall -Wextra $(OPENMP) test/test_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test_data: test/test_data.c train.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) test/test_data.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

generate: generate.c train.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) generate.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# the tokenizer's own command line: encode, decode, chat, train (see ./tokenizer --help)
tokenizer: $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) tokenizer.c -o $@ $(LDLIBS)

bench_train: test/bench_train.c train.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) test/bench_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

# test/test_tokenizer.sh and test/test_generate.sh build their own binaries (optimised and sanitised)
test: train test_train train_asan test_train_asan test_data
	@bash test/run_tests.sh

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

clean:
	rm -f train train_asan test_train test_train_asan test_data bench_train generate generate_asan test_generate bench_generate tokenizer
	rm -rf test/tmp
