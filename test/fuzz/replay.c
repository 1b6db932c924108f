// replay.c: a fuzz harness (test/fuzz/fuzz_*.c) as a plain program. Each file named on the
// command line goes through LLVMFuzzerTestOneInput once, and a line "FILE: accepted" or
// "FILE: rejected" (the parser's error line is on stderr) says how it went. A crash, a
// sanitizer report or a memory blow-up (fuzz.h) ends the program instead. Built with the
// project's sanitizers by `make fuzz_replay`; test/test_hostile.sh runs the corpus with it.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern int fuzz_rejected;

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...  (runs each file through the fuzz harness)\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        FILE* f = fopen(argv[i], "rb");
        if (f == NULL) { perror(argv[i]); return 2; }
        size_t size = 0, cap = 1 << 16;
        uint8_t* data = malloc(cap);
        for (size_t got; data && (got = fread(data + size, 1, cap - size, f)) > 0;) {
            size += got;
            if (size == cap) data = realloc(data, cap *= 2);
        }
        fclose(f);
        if (data == NULL) { fprintf(stderr, "%s: out of memory\n", argv[i]); return 2; }
        uint8_t* exact = malloc(size ? size : 1);  // exactly the input: AddressSanitizer sees any read past it
        if (exact == NULL) { fprintf(stderr, "%s: out of memory\n", argv[i]); return 2; }
        memcpy(exact, data, size);
        free(data);
        LLVMFuzzerTestOneInput(exact, size);
        printf("%s: %s\n", argv[i], fuzz_rejected ? "rejected" : "accepted");
        fflush(stdout);
        free(exact);
    }
    return 0;
}
