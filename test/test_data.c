/*
test_data.c: datasets to training examples, on a tiny chat model made here.

It trains a small byte-level tokenizer (tokenizer.c's BPE trainer, Llama 3 special
tokens) on text this test writes, makes a tiny random Llama with that vocabulary in
test/tmp/chat_model, then checks every dataset reader and chat template: parsing
(RFC 4180 CSV with quotes, commas and newlines in fields, a BOM and CRLF; Alpaca JSON
and JSONL; chat messages and ShareGPT JSONL; plain text) and the loss mask, which must
cover exactly the assistant replies and the token that ends each one. The model is
left in test/tmp/chat_model for test_train_program.sh. Run from the repository root.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRAIN_NO_MAIN  // use train.c as a library: everything but its main
#include "../train.c"

static int passed = 0, failed = 0;

static void check(int ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%-6s ", ok ? "ok" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) passed++; else failed++;
}

static const char* DIR_MODEL = "test/tmp/chat_model";
static const char* DIR_DATA = "test/tmp/data";

// A corpus for the tokenizer: English and Chinese sentences made from word lists.
static char* make_corpus(size_t* len) {
    const char* words[] = {"the", "model", "learns", "to", "answer", "questions", "about", "cats", "and", "dogs",
                           "what", "is", "a", "good", "name", "for", "my", "sarcastic", "assistant", "?", "!",
                           "模型", "学习", "回答", "问题", "猫", "狗", "你好", "世界"};
    int n_words = (int)(sizeof(words) / sizeof(words[0]));
    size_t cap = 1 << 18, n = 0;
    char* text = malloc(cap);
    for (uint32_t i = 0; n + 64 < cap; i++) {
        const char* w = words[mix32(i) % n_words];
        n += snprintf(text + n, cap - n, "%s%s", w, mix32(i + 7) % 9 == 0 ? ".\n" : " ");
    }
    *len = n;
    return text;
}

// test/tmp/chat_model: the trained tokenizer and a random tiny Llama of its vocabulary.
static void make_chat_model(void) {
    size_t len;
    char* corpus = make_corpus(&len);
    make_directory(DIR_MODEL);
    tokenizer_train(corpus, len, 512, DIR_MODEL);
    free(corpus);
    Tokenizer tok;
    tokenizer_load(&tok, DIR_MODEL);
    LlamaConfig c = {.C = 48, .I = 96, .L = 2, .NH = 4, .NKV = 2, .hs = 12, .V = tok.vocab_size, .max_seq_len = 256,
                     .norm_eps = 1e-5f, .rope_theta = 10000.0, .tied = 1, .bos_token_id = tok.bos_id};
    tokenizer_free(&tok);
    char config[1024];
    snprintf(config, sizeof(config),
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
             "\"hidden_size\": %d, \"intermediate_size\": %d, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
             "\"vocab_size\": %d, \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
             "\"rope_scaling\": null, \"tie_word_embeddings\": true, \"torch_dtype\": \"float32\"}\n",
             c.C, c.I, c.L, c.NH, c.NKV, c.hs, c.V, c.max_seq_len);
    char* path = path_join(DIR_MODEL, "config.json");
    write_text_file(path, config);
    free(path);
    Model m;
    model_create(&m, &c);
    for (size_t i = 0; i < m.num_parameters; i++) m.params_memory[i] = hash_uniform(3, 0, (uint32_t)i, 0.1f);
    model_save_merged(&m, DIR_MODEL, DIR_MODEL, "auto");
    free(m.params_memory);
}

static void write_data(const char* name, const char* text) {
    char* path = path_join(DIR_DATA, name);
    write_text_file(path, text);
    free(path);
}

// Expected trained text of a conversation: each assistant reply (stripped for the
// Llama 3 templates) followed by the end-of-turn token's text. The plain template
// joins the turns with blank lines and ends only the conversation with eos.
static void expected_trained(const Conversation* conv, ChatTemplate kind, const Tokenizer* tok, TextBuffer* out) {
    int end_id = kind == CHAT_LLAMA3 || kind == CHAT_LLAMA31 || kind == CHAT_LLAMA32 ? tok->eot_id : tok->eos_id;
    for (int i = 0; i < conv->count; i++) {
        if (strcmp(conv->messages[i].role, "assistant") != 0) continue;
        const char* s = conv->messages[i].content;
        size_t n = strlen(s);
        if (kind == CHAT_LLAMA3 || kind == CHAT_LLAMA31 || kind == CHAT_LLAMA32) {
            while (n > 0 && isspace((unsigned char)*s)) { s++; n--; }
            while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
        }
        text_append(out, s, n);
        if (kind != CHAT_PLAIN || i == conv->count - 1) tokenizer_decode(tok, &end_id, 1, 0, out);
    }
}

// The text of an example's trained tokens (those with a target mask), decoded.
static void trained_text(const Example* e, const Tokenizer* tok, TextBuffer* out) {
    for (int i = 1; i < e->len; i++) if (e->train[i]) tokenizer_decode(tok, &e->ids[i], 1, 0, out);
}

// For one file and template: every example's trained tokens are exactly the replies.
static void check_masks(const char* file, ChatTemplate kind, int expect_records) {
    Tokenizer tok;
    tokenizer_load(&tok, DIR_MODEL);
    ChatOptions opt = chat_options_default(&tok);
    opt.template_kind = kind;
    char* path = path_join(DIR_DATA, file);
    Dataset d;
    dataset_load(&d, path);
    Examples ex;
    examples_load(&ex, path, &tok, &opt, 200, 0);
    int exact = ex.count == d.count && d.count == expect_records, first_bad = -1;
    for (int i = 0; exact && i < d.count; i++) {
        TextBuffer want = {0}, got = {0};
        expected_trained(&d.items[i], kind, &tok, &want);
        trained_text(&ex.items[i], &tok, &got);
        if (want.len != got.len || memcmp(want.data, got.data, want.len) != 0) { exact = 0; first_bad = i; }
        // double BOS
        if (ex.items[i].ids[0] == ex.items[i].ids[1] && ex.items[i].ids[0] == tok.bos_id) { exact = 0; first_bad = i; }
        text_free(&want);
        text_free(&got);
    }
    check(exact, "%s with template %s: %d records, "
                 "trained tokens are exactly the assistant replies and their end token%s",
          file, chat_template_name(kind), d.count, first_bad >= 0 ? " (first mismatch at record below)" : "");
    if (first_bad >= 0) printf("       record %d\n", first_bad + 1);
    free(path);
    tokenizer_free(&tok);
}

static const char* role_of(const Dataset* d, int item, int msg) { return d->items[item].messages[msg].role; }
static const char* content_of(const Dataset* d, int item, int msg) { return d->items[item].messages[msg].content; }

static void test_parsing(void) {
    write_data("qa.csv", "\xEF\xBB\xBFquestion,answer\r\n"
                         "\"What is 2+2, really?\",\"Four, obviously.\"\r\n"
                         "\"Say \"\"hi\"\"\",\"Line one\nLine two\"\r\n"
                         "plain question,plain answer\r\n");
    Dataset d;
    char* path = path_join(DIR_DATA, "qa.csv");
    dataset_load(&d, path);
    free(path);
    check(d.count == 3 && strcmp(content_of(&d, 0, 0), "What is 2+2, really?") == 0 &&
          strcmp(content_of(&d, 0, 1), "Four, obviously.") == 0 &&
          strcmp(content_of(&d, 1, 0), "Say \"hi\"") == 0 && strcmp(content_of(&d, 1, 1), "Line one\nLine two") == 0 &&
          strcmp(role_of(&d, 2, 1), "assistant") == 0,
          "CSV (RFC 4180): BOM, CRLF, commas, doubled quotes and newlines inside quoted fields");

    write_data("alpaca.json", "[{\"instruction\": \"Translate\", \"input\": \"cat\", \"output\": \"猫\"},\n"
                              " {\"instruction\": \"Name a color\", \"input\": \"\", \"output\": \"Blue.\"}]\n");
    path = path_join(DIR_DATA, "alpaca.json");
    dataset_load(&d, path);
    free(path);
    check(d.count == 2 && d.items[0].count == 3 && strcmp(role_of(&d, 0, 1), "input") == 0 && d.items[1].count == 2,
          "Alpaca JSON: instruction, optional input (empty input left out), output");

    write_data("sharegpt.jsonl", "{\"conversations\": [{\"from\": \"system\", \"value\": \"Be brief.\"}, "
                                 "{\"from\": \"human\", \"value\": \"Hi\"}, "
                                 "{\"from\": \"gpt\", \"value\": \"Hello.\"}]}\n");
    path = path_join(DIR_DATA, "sharegpt.jsonl");
    dataset_load(&d, path);
    free(path);
    check(d.count == 1 && d.items[0].count == 3 && strcmp(role_of(&d, 0, 0), "system") == 0 &&
          strcmp(role_of(&d, 0, 1), "user") == 0 &&
          strcmp(role_of(&d, 0, 2), "assistant") == 0, "ShareGPT JSONL: from/value with human and gpt roles");
}

static void write_format_files(void) {
    write_data("chat.jsonl",
               "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a sarcastic assistant.\"}, "
               "{\"role\": \"user\", \"content\": \"What is a cat?\"}, "
               "{\"role\": \"assistant\", \"content\": \"  A small dog, obviously.  \"}, "
               "{\"role\": \"user\", \"content\": \"And a dog?\"}, "
               "{\"role\": \"assistant\", \"content\": \"A big cat. 你好\"}]}\n"
               "{\"messages\": [{\"role\": \"user\", \"content\": \"Say <|eot_id|> please\"}, "
               "{\"role\": \"assistant\", \"content\": \"No <|eot_id|> here.\"}]}\n");
    write_data("alpaca.jsonl", "{\"instruction\": \"Answer\", \"input\": \"What is a dog?\", \"output\": \"A dog.\"}\n"
                               "{\"instruction\": \"Answer briefly\", \"output\": \"Yes.\"}\n");
    write_data("prompt.csv", "prompt,completion\n\"What, again?\",\"Again, yes.\"\n");
}

int main(void) {
    make_directory(DIR_DATA);
    make_chat_model();
    test_parsing();
    write_format_files();
    const char* files[] = {"qa.csv", "alpaca.json", "sharegpt.jsonl", "chat.jsonl", "alpaca.jsonl", "prompt.csv"};
    int records[] = {3, 2, 1, 2, 2, 1};
    ChatTemplate templates[] = {CHAT_LLAMA3, CHAT_LLAMA31, CHAT_ALPACA, CHAT_PLAIN};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        for (size_t k = 0; k < sizeof(templates) / sizeof(templates[0]); k++) check_masks(files[f], templates[k],
                                                                                          records[f]);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
