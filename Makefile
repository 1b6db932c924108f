# make train && ./train     fine-tune (see README.md)
# make test                 every test; ends with "N passed, M failed"
# make bench                LoRA training step vs PyTorch on a Llama-3.2-1B-shaped stack

CC ?= gcc
CFLAGS ?= -O3
CFLAGS += -Wall -Wextra
# -march=native and OpenMP when the compiler has them; everything still builds without.
CFLAGS += $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
OPENMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
CFLAGS += $(OPENMP)
LDLIBS = -lcjson -lm
SANITIZE = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
PYTHON_TORCH = /usr/bin/python3

.PHONY: all test bench reference clean cjson

all: train test_train

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

bench_train: test/bench_train.c train.c $(TOKENIZER) | cjson
	$(CC) $(CFLAGS) test/bench_train.c $(TOKENIZER_LIB) -o $@ $(LDLIBS)

test: train test_train train_asan test_train_asan test_data
	@bash test/run_tests.sh

bench: bench_train
	@bash test/bench_train.sh

# Regenerates the tiny models and reference activations (needs Debian's python3-torch).
reference:
	$(PYTHON_TORCH) test/reference.py

clean:
	rm -f train train_asan test_train test_train_asan test_data bench_train
	rm -rf test/tmp
