/*
bench_tokenizer.c: encode throughput of tokenizer.c on the test corpus, single-threaded,
measured the way test/hf_tokenize.js bench measures Hugging Face: every corpus string
encoded once per pass, best of 3 passes after a warm-up pass; then the corpus as one text.

  bench_tokenizer TOKENIZER_PATH CORPUS_BIN
*/
#define TRAIN_NO_MAIN  // tokenizer.c as a library: this file has its own main
#include "../tokenizer.c"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
    if (argc != 3) { fprintf(stderr, "usage: bench_tokenizer TOKENIZER_PATH CORPUS_BIN\n"); return 2; }
    double t0 = now_seconds();
    Tokenizer t;
    tokenizer_load(&t, argv[1]);
    double load = now_seconds() - t0;
    size_t size;
    char* all = read_file(argv[2], &size, "; run test/make_corpus.py first");
    size_t bytes = 0;
    for (size_t i = 0; i + 4 <= size;) { uint32_t n; memcpy(&n, all + i, 4); bytes += n; i += 4 + n; }
    Tokens ids = {0};
    double best = 1e30;
    size_t n_tokens = 0;
    for (int rep = 0; rep < 4; rep++) {
        double start = now_seconds();
        n_tokens = 0;
        for (size_t i = 0; i + 4 <= size;) {
            uint32_t n;
            memcpy(&n, all + i, 4);
            ids.n = 0;
            tokenizer_encode(&t, all + i + 4, n, &ids);
            n_tokens += ids.n;
            i += 4 + n;
        }
        double dt = now_seconds() - start;
        if (rep > 0 && dt < best) best = dt;
    }
    printf("tokenizer.c per-string %.2f MB/s %zu bytes %.3f s (%zu tokens; load %.2f s)\n",
           bytes / 1e6 / best, bytes, best, n_tokens, load);
    // the same bytes as one text
    TextBuffer whole = {0};
    for (size_t i = 0; i + 4 <= size;) {
        uint32_t n;
        memcpy(&n, all + i, 4);
        text_append(&whole, all + i + 4, n);
        i += 4 + n;
    }
    best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        double start = now_seconds();
        ids.n = 0;
        tokenizer_encode(&t, whole.data, whole.len, &ids);
        double dt = now_seconds() - start;
        if (rep > 0 && dt < best) best = dt;
    }
    printf("tokenizer.c whole-text %.2f MB/s %zu bytes %.3f s (%zu tokens)\n", bytes / 1e6 / best, bytes, best, ids.n);
    text_free(&whole);
    tokens_free(&ids);
    free(all);
    tokenizer_free(&t);
    return 0;
}
