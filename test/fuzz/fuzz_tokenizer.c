/*
fuzz_tokenizer.c: a libFuzzer harness for tokenizer.c on hostile files. An input is a
tokenizer.json, optionally followed by a NUL byte and a tokenizer_config.json, and by
another NUL byte and a text. When the tokenizer loads, the text and a few fixed strings
are encoded (special tokens parsed and not) and decoded (whole and streamed), every id is
decoded, and a conversation is rendered with every chat template. A file tokenizer.c
refuses is fine; a crash, a sanitizer report, a hang or a broken invariant is a finding.

  fuzz:    clang -fsanitize=fuzzer,address,undefined -O1 -g -DFUZZING test/fuzz/fuzz_tokenizer.c \
               -o fuzz_tokenizer -lcjson -lm
           ./fuzz_tokenizer -dict=test/fuzz/fuzz_tokenizer.dict -close_fd_mask=2 NEW_DIR test/corpus/tokenizer
  replay:  gcc -fsanitize=address,undefined -fno-sanitize-recover=undefined -O1 -g test/fuzz/fuzz_tokenizer.c \
               -o fuzz_tokenizer_replay -lcjson -lm
           ./fuzz_tokenizer_replay FILE...   (each corpus file: one line, loaded or refused)

fail() returns here through llmc/utils.h's fail_jump instead of exiting, leaving behind what
the refused load (or encode, or render) had allocated. So every allocation of tokenizer.c and
of cJSON goes through a tracker below: after a step that failed, the harness frees what the
step left; after a step that finished, nothing it allocated may be left (that is a leak).
*/
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

// ----------------------------------------------------------------------------
// the allocation tracker: a header before each block holds its place in the list of live
// blocks (so freeing is O(1)) and a serial number (so a failed step's blocks can be found)

typedef struct {
    void* base;          // what the real allocator returned
    size_t size;
    size_t index;        // in live_blocks
    uint64_t serial;
} BlockHeader;

static BlockHeader** live_blocks;
static size_t n_live, cap_live;
static uint64_t next_serial;

static void* fuzz_aligned_alloc(size_t align, size_t size) {
    size_t offset = align > 32 ? align : 32;   // room for the header, the block still aligned
    if (size > SIZE_MAX / 2) return NULL;
    void* base = (aligned_alloc)(offset, offset + (size + offset - 1) / offset * offset);
    if (base == NULL) return NULL;
    BlockHeader* h = (BlockHeader*)((char*)base + offset) - 1;
    *h = (BlockHeader){base, size, n_live, next_serial++};
    if (n_live == cap_live) {
        cap_live = cap_live ? 2 * cap_live : 1024;
        live_blocks = (realloc)(live_blocks, cap_live * sizeof(*live_blocks));
        if (live_blocks == NULL) abort();
    }
    live_blocks[n_live++] = h;
    return h + 1;
}

static void fuzz_free(void* p) {
    if (p == NULL) return;
    BlockHeader* h = (BlockHeader*)p - 1;
    BlockHeader* last = live_blocks[--n_live];
    live_blocks[h->index] = last;
    last->index = h->index;
    (free)(h->base);
}

static void* fuzz_malloc(size_t size) { return fuzz_aligned_alloc(16, size); }

static void* fuzz_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    void* p = fuzz_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

static void* fuzz_realloc(void* p, size_t size) {
    if (p == NULL) return fuzz_malloc(size);
    void* q = fuzz_malloc(size);
    if (q == NULL) return NULL;
    size_t old = ((BlockHeader*)p - 1)->size;
    memcpy(q, p, old < size ? old : size);
    fuzz_free(p);
    return q;
}

static char* fuzz_strdup(const char* s) {
    char* p = fuzz_malloc(strlen(s) + 1);
    return p ? strcpy(p, s) : NULL;
}

static size_t live_since(uint64_t since) {
    size_t n = 0;
    for (size_t i = 0; i < n_live; i++) n += live_blocks[i]->serial >= since;
    return n;
}

// Frees every live block allocated since serial `since`.
static void free_blocks_since(uint64_t since) {
    for (size_t i = n_live; i-- > 0;) {
        if (i < n_live && live_blocks[i]->serial >= since) fuzz_free(live_blocks[i] + 1);
    }
}

#define malloc(n) fuzz_malloc(n)
#define calloc(n, size) fuzz_calloc(n, size)
#define realloc(p, n) fuzz_realloc(p, n)
#define aligned_alloc(align, n) fuzz_aligned_alloc(align, n)
#define free(p) fuzz_free(p)
#define strdup(s) fuzz_strdup(s)

#ifndef TRAIN_NO_MAIN
#define TRAIN_NO_MAIN  // tokenizer.c as a library: this file has its own entry points
#endif
#include "../../tokenizer.c"

static void must(int ok, const char* what) {
    if (!ok) {
        fprintf(stderr, "fuzz_tokenizer: invariant broken: %s\n", what);
        abort();
    }
}

typedef struct {
    Tokenizer t;
    const char* json;   // the input, cut at its NUL bytes
    size_t json_len;
    const char* config;
    size_t config_len;
    const char* text;
    size_t text_len;
    ChatOptions chat;
} FuzzState;

// Runs one step; a fail() inside it (a refused file, a template this tokenizer cannot
// render, a character it cannot encode) comes back here. Returns 1 if the step finished,
// having freed all it allocated; after a failure, frees what it left unless keep_state
// (the load and the config step leave their allocations in the Tokenizer).
static int try_step(void (*step)(FuzzState*), FuzzState* state, int keep_state) {
    jmp_buf here;
    fail_jump = &here;
    volatile int finished = 0;
    size_t live_before = n_live;
    uint64_t serial_before = next_serial;
    if (setjmp(here) == 0) {
        step(state);
        finished = 1;
    }
    fail_jump = NULL;
    if (finished && !keep_state) must(n_live == live_before, "a step that finished left memory allocated (a leak)");
    if (!finished && !keep_state) free_blocks_since(serial_before);
    return finished;
}

static void check_ids(const Tokenizer* t, const Tokens* ids) {
    for (size_t i = 0; i < ids->n; i++) {
        must(ids->ids[i] >= 0 && ids->ids[i] < t->vocab_size, "an id out of [0, V)");
        must(ids->mask[i] <= 1, "a mask value other than 0 or 1");
    }
}

// Encode, decode and stream-decode one text. Byte-level: every token's text is its bytes,
// so decode(encode(x)) gives x back (invalid UTF-8 as U+FFFD), special tokens parsed or not.
static void encode_decode(const Tokenizer* t, const char* text, size_t len) {
    for (int ordinary = 0; ordinary <= 1; ordinary++) {
        Tokens ids = {0};
        if (ordinary) tokenizer_encode_ordinary(t, text, len, &ids);
        else tokenizer_encode(t, text, len, &ids);
        check_ids(t, &ids);
        TextBuffer decoded = {0}, expect = {0};
        text_append(&decoded, "", 0);
        text_append(&expect, "", 0);
        tokenizer_decode(t, ids.ids, ids.n, 0, &decoded);
        utf8_append_lossy(&expect, (const unsigned char*)text, len);
        if (t->family == TOKENIZER_BYTE_LEVEL) {
            must(decoded.len == expect.len && memcmp(decoded.data, expect.data, expect.len) == 0,
                 "byte-level decode(encode(x)) != x");
        }
        StreamDecoder d;
        stream_decoder_init(&d, t, 0);
        TextBuffer streamed = {0};
        text_append(&streamed, "", 0);
        for (size_t i = 0; i <= ids.n; i++) {
            const char* s = i < ids.n ? stream_decoder_push(&d, ids.ids[i]) : stream_decoder_flush(&d);
            size_t n = strlen(s);
            must(utf8_valid_prefix((const unsigned char*)s, n) == n, "a streamed chunk that is not whole UTF-8");
            text_append(&streamed, s, n);
        }
        if (t->family == TOKENIZER_BYTE_LEVEL && memchr(decoded.data, 0, decoded.len) == NULL) {
            must(streamed.len == decoded.len && memcmp(streamed.data, decoded.data, decoded.len) == 0,
                 "byte-level streamed decode != decode");
        }
        stream_decoder_free(&d);
        text_free(&streamed);
        text_free(&decoded);
        text_free(&expect);
        tokens_free(&ids);
    }
}

static void step_load(FuzzState* s) { tokenizer_load_text(&s->t, s->json, s->json_len, "tokenizer.json"); }

static void step_config(FuzzState* s) { read_config_text(&s->t, s->config, s->config_len, "tokenizer_config.json"); }

static const char* const TEXTS[] = {
    "Hello world", "", " ", "  \n\n x\t\r\n", "It's 1234567 ok?!", "\xE2\x96\x81\xE2\x96\x81<0x41> <unk>",
    "<|begin_of_text|><|eot_id|>x<s></s> <|start_header_id|>", "\xFF\xFE a \xE2\x96", "\xF0\x9F\x98\x80 \xE4\xB8\xAD",
};

static void step_encode(FuzzState* s) {
    for (size_t k = 0; k < sizeof(TEXTS) / sizeof(TEXTS[0]); k++) encode_decode(&s->t, TEXTS[k], strlen(TEXTS[k]));
}

static void step_encode_input_text(FuzzState* s) { encode_decode(&s->t, s->text, s->text_len); }

// Every id, decoded at once (with and without special tokens) and streamed one at a time.
static void step_decode_all(FuzzState* s) {
    const Tokenizer* t = &s->t;
    int* all = malloc_check((size_t)t->vocab_size * sizeof(int) + 1, "ids");
    for (int id = 0; id < t->vocab_size; id++) all[id] = id;
    for (int skip = 0; skip <= 1; skip++) {
        TextBuffer out = {0};
        tokenizer_decode(t, all, (size_t)t->vocab_size, skip, &out);
        must(out.len == 0 || utf8_valid_prefix((const unsigned char*)out.data, out.len) == out.len,
             "decode gave invalid UTF-8");
        text_free(&out);
    }
    StreamDecoder d;
    stream_decoder_init(&d, t, 0);
    for (int id = 0; id < t->vocab_size; id++) stream_decoder_push(&d, id);
    stream_decoder_flush(&d);
    stream_decoder_free(&d);
    free(all);
}

static void step_token_ids(FuzzState* s) {
    const char* names[] = {"<|eot_id|>", "<s>", "</s>", "<unk>", "a", "\xC4\xA0", "\xE2\x96\x81", ""};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        int id = tokenizer_token_id(&s->t, names[k]);
        must(id >= -1 && id < s->t.vocab_size, "tokenizer_token_id out of range");
    }
    must(s->t.bos_id >= -1 && s->t.bos_id < s->t.vocab_size && s->t.eos_id >= -1 && s->t.eos_id < s->t.vocab_size &&
         s->t.eot_id >= -1 && s->t.eot_id < s->t.vocab_size, "bos/eos/eot out of range");
}

static void step_chat(FuzzState* s) {
    ChatMessage m[5] = {{"system", "Be brief."}, {"user", "Hi <|eot_id|></s> there"}, {"assistant", " Hello! "},
                        {"user", "\xE4\xB8\xAD?"}, {"assistant", "<|start_header_id|>ok"}};
    for (int n = 1; n <= 5; n += 2) {   // system + user, then longer conversations
        Tokens out = {0};
        chat_render(&s->t, &s->chat, m, n, &out);
        check_ids(&s->t, &out);
        tokens_free(&out);
    }
}

static void step_chat_default(FuzzState* s) { s->chat = chat_options_default(&s->t); }

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
static int last_loaded;   // tokenizer.json and tokenizer_config.json both loaded (the replay's report)

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static FuzzState state;   // static: nothing a longjmp returns over lives in a register
    memset(&state, 0, sizeof(state));
    const char* input = (const char*)data;
    const char* nul = memchr(input, 0, size);
    state.json = input;
    state.json_len = nul ? (size_t)(nul - input) : size;
    if (nul) {
        state.config = nul + 1;
        const char* end = input + size;
        const char* second = memchr(state.config, 0, (size_t)(end - state.config));
        state.config_len = (size_t)((second ? second : end) - state.config);
        if (second) { state.text = second + 1; state.text_len = (size_t)(end - state.text); }
    }
    cJSON_InitHooks(&(cJSON_Hooks){fuzz_malloc, fuzz_free});
    uint64_t serial_start = next_serial;
    last_loaded = try_step(step_load, &state, 1);
    int config_ok = last_loaded && (!state.config || try_step(step_config, &state, 1));
    if (last_loaded) {
        try_step(step_token_ids, &state, 0);
        try_step(step_encode, &state, 0);
        if (state.text) try_step(step_encode_input_text, &state, 0);
        try_step(step_decode_all, &state, 0);
        if (try_step(step_chat_default, &state, 0)) try_step(step_chat, &state, 0);
        for (int kind = CHAT_PLAIN; kind <= CHAT_LLAMA32; kind++) {   // every template, trained and prompted
            for (int variant = 0; variant < 4; variant++) {
                state.chat = (ChatOptions){(ChatTemplate)kind, "01 Jan 2025", variant & 1, variant >> 1, variant == 3};
                try_step(step_chat, &state, 0);
            }
        }
    }
    last_loaded = config_ok;
    tokenizer_free(&state.t);   // all of it, or what a refused load had put in the struct
    if (config_ok) must(live_since(serial_start) == 0, "memory left allocated after tokenizer_free (a leak)");
    free_blocks_since(serial_start);   // what a refused load or config left behind
    return 0;
}

#ifndef FUZZING
// Replays files (a corpus, a crash) through the harness: for regression runs under
// AddressSanitizer and UndefinedBehaviorSanitizer built with gcc.
int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...   (inputs: tokenizer.json [NUL tokenizer_config.json [NUL text]])\n",
                argv[0]);
        return 2;
    }
    int loaded = 0;
    for (int i = 1; i < argc; i++) {
        size_t len;
        char* data = read_file(argv[i], &len, "");
        LLVMFuzzerTestOneInput((const uint8_t*)data, len);
        printf("%s %s\n", last_loaded ? "loaded " : "refused", argv[i]);
        fflush(stdout);
        loaded += last_loaded;
        free(data);
    }
    printf("%d inputs: %d loaded, %d refused, no crash\n", argc - 1, loaded, argc - 1 - loaded);
    return 0;
}
#endif
