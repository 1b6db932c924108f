// dataloader.h: datasets (CSV, Alpaca, chat JSONL, text) -> Dataset of conversations -> Examples
// (ids + loss mask, examples_load) -> DataLoader (dataloader_init, dataloader_next) -> Batch
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <limits.h>
#include <cjson/cJSON.h>
#include "utils.h"
#include "json.h"
#include "../tokenizer.h"

// ----------------------------------------------------------------------------
// datasets: CSV, Alpaca JSON/JSONL, chat JSONL (messages or ShareGPT) and plain text,
// read into conversations of (role, content) messages. Roles are system, user,
// assistant; an Alpaca "input" is kept as its own message (role input) after the
// instruction so each template can place it; plain text is one message of role text.

typedef struct {
    char* role;
    char* content;
} Message;

typedef struct {
    Message* messages;
    int count;
    int line;  // where the record starts in the file, for error messages
} Conversation;

typedef struct {
    char* path;
    const char* unit;  // "line", or "record" for a JSON array: how conv->line counts
    Conversation* items;
    int count, capacity;
} Dataset;

static void conversation_add(Conversation* conv, const char* role, const char* content) {
    conv->messages = realloc(conv->messages, (conv->count + 1) * sizeof(Message));
    if (conv->messages == NULL) fail("out of memory reading the dataset");
    conv->messages[conv->count].role = strdup(role);
    conv->messages[conv->count].content = strdup(content);
    conv->count++;
}

static Conversation* dataset_add(Dataset* d, int line) {
    if (d->count == d->capacity) {
        if (d->capacity > INT_MAX / 2) fail("%s: more than %d records; split the dataset into several files",
                                            d->path, d->capacity);
        d->capacity = d->capacity ? 2 * d->capacity : 256;
        d->items = realloc(d->items, d->capacity * sizeof(Conversation));
        if (d->items == NULL) fail("out of memory reading %s", d->path);
    }
    Conversation* conv = &d->items[d->count++];
    memset(conv, 0, sizeof(*conv));
    conv->line = line;
    return conv;
}

// The record layouts every format shares, by field name. Returns 0 if none matches.
// get(ctx, name) returns a field's text or NULL.
typedef const char* (*FieldGetter)(void* ctx, const char* name);
static int record_to_conversation(Conversation* conv, FieldGetter get, void* ctx) {
    const char* system = get(ctx, "system");
    if (system && *system) conversation_add(conv, "system", system);
    const char* pairs[][2] = {{"instruction", "output"}, {"question", "answer"}, {"prompt", "completion"}};
    for (int i = 0; i < 3; i++) {
        const char* prompt = get(ctx, pairs[i][0]);
        const char* response = get(ctx, pairs[i][1]);
        if (prompt == NULL && response == NULL) continue;
        if (prompt == NULL || response == NULL) return -i - 1;  // half a pair: caller names it
        conversation_add(conv, "user", prompt);
        const char* input = i == 0 ? get(ctx, "input") : NULL;
        if (input && *input) conversation_add(conv, "input", input);
        conversation_add(conv, "assistant", response);
        return 1;
    }
    const char* text = get(ctx, "text");
    if (text == NULL) return 0;
    conversation_add(conv, "text", text);
    return 1;
}

static const char* RECORD_LAYOUTS = "instruction/input/output, question/answer, prompt/completion or text "
                                    "(JSON also: messages or ShareGPT conversations)";

static void record_check(int status, const Dataset* d, int line) {
    const char* pairs[][2] = {{"instruction", "output"}, {"question", "answer"}, {"prompt", "completion"}};
    if (status < 0) {
        fail("%s %s %d: has \"%s\" or \"%s\" but not both; each example needs both", d->path, d->unit, line,
             pairs[-status - 1][0], pairs[-status - 1][1]);
    }
    if (status == 0) fail("%s %s %d: none of the expected fields; expected %s", d->path, d->unit, line, RECORD_LAYOUTS);
}

// --- CSV (RFC 4180): a header row, then records; quoted fields may hold commas, "" and newlines

typedef struct {
    char** fields;
    int count, capacity;
} CsvRow;

static void csv_row_add(CsvRow* row, const char* text, size_t n) {
    if (row->count == row->capacity) {
        row->capacity = row->capacity ? 2 * row->capacity : 8;
        row->fields = realloc(row->fields, row->capacity * sizeof(char*));
    }
    char* field = malloc(n + 1);
    if (row->fields == NULL || field == NULL) fail("out of memory reading CSV");
    if (n > 0) memcpy(field, text, n);  // text is NULL for an empty quoted field before any other
    field[n] = '\0';
    row->fields[row->count++] = field;
}

static void csv_row_clear(CsvRow* row) {
    for (int i = 0; i < row->count; i++) free(row->fields[i]);
    row->count = 0;
}

// Reads one record at *p into row; *line counts newlines. Returns 0 at end of input.
static int csv_read_row(const char** p, const char* end, CsvRow* row, int* line, const char* path, char** scratch,
                        size_t* scratch_size) {
    csv_row_clear(row);
    if (*p >= end) return 0;
    const char* s = *p;
    for (;;) {
        if (row->count >= 1 << 20) fail("%s line %d: more than %d fields in a row; is this a CSV file of records?",
                                        path, *line, 1 << 20);
        size_t n = 0;
        if (s < end && *s == '"') {  // quoted field: "" is a quote, anything else is literal
            int open_line = *line;
            s++;
            for (;;) {
                if (s >= end) fail("%s line %d: unterminated quoted field (a \" opened here is never closed)",
                                   path, open_line);
                if (*s == '"') {
                    if (s + 1 < end && s[1] == '"') s++;
                    else break;
                }
                if (*s == '\n') (*line)++;
                if (n + 1 >= *scratch_size) {
                    *scratch_size = *scratch_size * 2 + 64;
                    *scratch = realloc(*scratch, *scratch_size);
                    if (*scratch == NULL) fail("out of memory reading %s", path);
                }
                (*scratch)[n++] = *s++;
            }
            s++;  // closing quote
            if (s < end && *s != ',' && *s != '\n' && *s != '\r') fail("%s line %d: unexpected character after "
                                                                       "a closing quote; quote the whole field",
                                                                       path, *line);
            csv_row_add(row, *scratch, n);
        } else {
            const char* start = s;
            while (s < end && *s != ',' && *s != '\n' && *s != '\r') {
                if (*s == '"') fail("%s line %d: a quote inside an unquoted field; "
                                    "wrap the field in quotes and double the quote", path, *line);
                s++;
            }
            csv_row_add(row, start, s - start);
        }
        if (s < end && *s == ',') { s++; continue; }
        if (s < end && *s == '\r') s++;
        if (s < end && *s == '\n') s++;
        (*line)++;
        break;
    }
    *p = s;
    return 1;
}

typedef struct {
    CsvRow* header;
    CsvRow* row;
} CsvRecord;

static const char* csv_get(void* ctx, const char* name) {
    CsvRecord* r = ctx;
    for (int i = 0; i < r->header->count; i++) {
        if (strcasecmp(r->header->fields[i], name) == 0) return r->row->fields[i];
    }
    return NULL;
}

static void dataset_read_csv(Dataset* d, const char* text, size_t size) {
    const char* p = text;
    const char* end = text + size;
    if (size >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;  // UTF-8 byte-order mark
    CsvRow header = {0}, row = {0};
    char* scratch = NULL;
    size_t scratch_size = 0;
    int line = 1;
    if (!csv_read_row(&p, end, &header, &line, d->path, &scratch,
                      &scratch_size)) fail("%s: empty file; expected a header row (%s)", d->path, RECORD_LAYOUTS);
    for (int i = 0; i < header.count; i++) {  // trim the column names (in linear time, however long)
        char* f = header.fields[i];
        size_t start = 0, end = strlen(f);
        while (start < end && isspace((unsigned char)f[start])) start++;
        while (end > start && isspace((unsigned char)f[end - 1])) end--;
        memmove(f, f + start, end - start);
        f[end - start] = '\0';
    }
    for (;;) {
        int row_line = line;
        if (!csv_read_row(&p, end, &row, &line, d->path, &scratch, &scratch_size)) break;
        if (row.count == 1 && row.fields[0][0] == '\0') continue;  // blank line
        if (row.count != header.count) fail("%s line %d: %d fields but the header has %d columns",
                                            d->path, row_line, row.count, header.count);
        CsvRecord record = {&header, &row};
        int status = record_to_conversation(dataset_add(d, row_line), csv_get, &record);
        if (status == 0) {
            char cols[512] = "";
            for (int i = 0; i < header.count && strlen(cols) < 400; i++) snprintf(cols + strlen(cols),
                                                                                  sizeof(cols) - strlen(cols), "%s%s",
                                                                                  i ? "," : "", header.fields[i]);
            fail("%s: header has columns %s; expected %s", d->path, cols, RECORD_LAYOUTS);
        }
        record_check(status, d, row_line);
    }
    csv_row_clear(&header);
    csv_row_clear(&row);
    free(header.fields);
    free(row.fields);
    free(scratch);
}

// --- JSON: an array of records, or JSONL (one record per line)

static const char* json_get(void* ctx, const char* name) {
    cJSON* v = json_field((cJSON*)ctx, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// A "messages" list ({role, content}) or ShareGPT "conversations" list ({from, value}).
static int json_chat_to_conversation(Conversation* conv, const cJSON* list, int sharegpt, const Dataset* d, int line) {
    const char* role_key = sharegpt ? "from" : "role";
    const char* content_key = sharegpt ? "value" : "content";
    for (const cJSON* m = list->child; m != NULL; m = m->next) {
        cJSON* role = json_field(m, role_key);
        cJSON* content = json_field(m, content_key);
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            fail("%s %s %d: every message needs string \"%s\" and \"%s\" fields", d->path, d->unit, line,
                 role_key, content_key);
        }
        const char* r = role->valuestring;
        if (strcmp(r, "human") == 0) r = "user";
        if (strcmp(r, "gpt") == 0) r = "assistant";
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0) {
            fail("%s %s %d: unknown role \"%s\" (expected system, user or assistant; ShareGPT: human, gpt)",
                 d->path, d->unit, line, role->valuestring);
        }
        conversation_add(conv, r, content->valuestring);
    }
    return 1;
}

static void dataset_add_json_record(Dataset* d, const cJSON* record, int line) {
    if (!cJSON_IsObject(record)) fail("%s %s %d: each record must be a JSON object", d->path, d->unit, line);
    Conversation* conv = dataset_add(d, line);
    cJSON* messages = json_field(record, "messages");
    cJSON* sharegpt = json_field(record, "conversations");
    int status;
    if (cJSON_IsArray(messages)) status = json_chat_to_conversation(conv, messages, 0, d, line);
    else if (cJSON_IsArray(sharegpt)) status = json_chat_to_conversation(conv, sharegpt, 1, d, line);
    else status = record_to_conversation(conv, json_get, (void*)record);
    record_check(status, d, line);
}

static void dataset_read_json(Dataset* d, const char* text, size_t size) {
    const char* p = text;
    while (p < text + size && isspace((unsigned char)*p)) p++;
    const char *at, *why;
    if (p < text + size && *p == '[') {  // one JSON array
        cJSON* array = json_parse_value(text, size, &at, &why);
        if (array == NULL) fail("%s line %d: %s%s", d->path, json_line_of(text, at), why,
                                strcmp(why, "text after the JSON value") == 0
                                    ? " (a .json dataset is one array of records; use .jsonl for one record per line)"
                                    : "");
        int index = 0;
        d->unit = "record";
        for (cJSON* record = array->child; record != NULL;
             record = record->next) dataset_add_json_record(d, record, ++index);
        cJSON_Delete(array);
        return;
    }
    int line = 0;
    for (const char* start = text; start < text + size;) {  // JSONL
        const char* newline = memchr(start, '\n', text + size - start);
        const char* stop = newline ? newline : text + size;
        line++;
        const char* q = start;
        while (q < stop && isspace((unsigned char)*q)) q++;
        if (q < stop) {
            cJSON* record = json_parse_value(start, stop - start, &at, &why);
            if (record == NULL) {
                const char* hint = strncmp(why, "a ", 2) == 0 ? "" : " (JSONL needs one complete JSON object per line)";
                fail("%s line %d: %s%s", d->path, line, why, hint);
            }
            dataset_add_json_record(d, record, line);
            cJSON_Delete(record);
        }
        start = stop + 1;
    }
}

static int has_suffix(const char* s, const char* suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

// Reads a dataset file; the format comes from the extension (.csv, .json, .jsonl, .txt).
void dataset_load(Dataset* d, const char* path) {
    memset(d, 0, sizeof(*d));
    d->path = strdup(path);
    d->unit = "line";
    size_t size;
    char* text = read_file(path, &size, "; pass a .csv, .json, .jsonl or .txt file with --data");
    const char* nul = memchr(text, '\0', size);  // C strings would end there: records lost without a word
    if (nul != NULL) fail("%s line %d: a NUL byte; the file is binary or corrupt (datasets are UTF-8 text)", path,
                          json_line_of(text, nul));
    if (size >= (size_t)INT_MAX && !has_suffix(path, ".txt")) {  // lines and records are counted in ints
        fail("%s: %zu bytes; a .csv or .json(l) dataset must be under 2 GiB: split it into several files "
             "(--data takes a comma-separated list)", path, size);
    }
    if (has_suffix(path, ".csv")) dataset_read_csv(d, text, size);
    else if (has_suffix(path, ".json") || has_suffix(path, ".jsonl")) dataset_read_json(d, text, size);
    else if (has_suffix(path, ".txt")) { if (size > 0) conversation_add(dataset_add(d, 1), "text", text); }
    else fail("%s: unknown dataset format; use .csv, .json, .jsonl or .txt", path);
    if (d->count == 0) fail("%s: the dataset has no examples", path);
    free(text);
}

void dataset_free(Dataset* d) {
    for (int i = 0; i < d->count; i++) {
        for (int k = 0; k < d->items[i].count; k++) {
            free(d->items[i].messages[k].role);
            free(d->items[i].messages[k].content);
        }
        free(d->items[i].messages);
    }
    free(d->items);
    free(d->path);
    memset(d, 0, sizeof(*d));
}

// ----------------------------------------------------------------------------
// batches: tokenized examples into (B,T) tokens, targets and positions, either one
// example per row with padding, or packed several to a row with positions restarting
// at 0 for each, which the attention turns into a block-causal mask.

typedef struct {
    int* ids;         // (len) token ids
    uint8_t* train;   // (len) 1 where the token is a training target
    int len;
} Example;

typedef struct {
    Example* items;
    int count;
} Examples;

// A micro-batch: what the model's forward takes. Rows of `width` tokens, row-major.
typedef struct {
    int* inputs;      // (B, T) token ids; rows x width of them used
    int* targets;     // (B, T) the next token where it is trained, else -1
    int* pos;         // (B, T) each token's position in its example (restarts per packed example)
    int rows, width;  // the part filled: rows <= B, width <= T
} Batch;

void batch_alloc(Batch* b, int B, int T) {
    b->inputs = malloc_check((size_t)3 * B * T * sizeof(int), "a batch");
    b->targets = b->inputs + (size_t)B * T;
    b->pos = b->targets + (size_t)B * T;
    b->rows = b->width = 0;
}

void batch_free(Batch* b) { free(b->inputs); }

// Writes an example's inputs ids[0..len-2] and next-token targets at offset `at`.
static void place_example(const Example* e, Batch* b, int at) {
    for (int t = 0; t < e->len - 1; t++) {
        b->inputs[at + t] = e->ids[t];
        b->targets[at + t] = e->train[t + 1] ? e->ids[t + 1] : -1;
        b->pos[at + t] = t;
    }
}

// Walks the examples in a seeded order, epoch after epoch (shuffle), or once in their
// own order (evaluation), filling one Batch at a time.
typedef struct {
    const Examples* examples;
    int B, T;
    int packing;   // several examples per row; else one per row, padded
    int pad_id;    // the token that fills padding (its targets are masked)
    int shuffle;   // 1: a new seeded order every epoch, without end; 0: one pass in order
    uint32_t seed;
    int* order;    // (examples->count) this epoch's order
    int epoch;     // the position: order[cursor] of this epoch is the next example
    int cursor;
} DataLoader;

// Deterministic order of an epoch: a Fisher-Yates shuffle driven by (seed, epoch).
void epoch_order(int* order, int n, uint32_t seed, int epoch) {
    for (int i = 0; i < n; i++) order[i] = i;
    uint32_t key = mix32(seed ^ mix32(0x5eed0000u + (uint32_t)epoch));
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(mix32(key ^ mix32((uint32_t)i)) % (uint32_t)(i + 1));
        int t = order[i]; order[i] = order[j]; order[j] = t;
    }
}

// Moves to example `cursor` of epoch `epoch` (a resumed run's position).
void dataloader_seek(DataLoader* l, int epoch, int cursor) {
    l->epoch = epoch;
    l->cursor = cursor;
    if (!l->shuffle) {
        for (int i = 0; i < l->examples->count; i++) l->order[i] = i;
    } else {
        epoch_order(l->order, l->examples->count, l->seed, epoch);
    }
}

void dataloader_init(DataLoader* l, const Examples* ex, int B, int T, int packing, int pad_id, int shuffle,
                     uint32_t seed) {
    *l = (DataLoader){.examples = ex, .B = B, .T = T, .packing = packing, .pad_id = pad_id, .shuffle = shuffle,
                      .seed = seed};
    l->order = malloc_check((size_t)(ex->count > 0 ? ex->count : 1) * sizeof(int), "the data order");
    dataloader_seek(l, 0, 0);
}

void dataloader_free(DataLoader* l) { free(l->order); }

// Fills b with the next micro-batch and returns its rows: 0 at the end of a pass without
// shuffle; with shuffle an exhausted epoch first moves on to the next one. Examples hold
// at most T + 1 ids. Padding: one example per row, rows as long as the longest; packing:
// rows of T, examples kept whole. Padding tokens are pad_id with masked targets.
int dataloader_next(DataLoader* l, Batch* b) {
    int n = l->examples->count;
    if (l->shuffle && l->cursor >= n) dataloader_seek(l, l->epoch + 1, 0);
    const Example* items = l->examples->items;
    int rows = 0, width = l->packing ? l->T : 1;
    if (!l->packing) {  // the row width is the longest of the next B examples
        for (int i = l->cursor; i < n && i < l->cursor + l->B; i++) {
            int len = items[l->order[i]].len - 1;
            width = len > width ? len : width;
        }
    }
    while (rows < l->B && l->cursor < n) {
        int row = rows * width, used = 0;
        while (l->cursor < n) {
            const Example* e = &items[l->order[l->cursor]];
            if (used > 0 && (!l->packing || used + e->len - 1 > width)) break;
            place_example(e, b, row + used);
            used += e->len - 1;
            l->cursor++;
        }
        for (int t = used; t < width; t++) {  // padding: its own segment, never a target
            b->inputs[row + t] = l->pad_id;
            b->targets[row + t] = -1;
            b->pos[row + t] = t - used;
        }
        rows++;
    }
    b->rows = rows;
    b->width = width;
    return rows;
}

// 1 when the epoch has no example left: the next call starts the next epoch (shuffle) or returns 0.
int dataloader_epoch_done(const DataLoader* l) { return l->cursor >= l->examples->count; }

// Micro-batches one epoch makes (counted on a pass in epoch 0's order).
int dataloader_batches_per_epoch(const DataLoader* l) {
    DataLoader pass = *l;
    pass.shuffle = 0;  // one pass over the order as it is, then stop
    pass.cursor = 0;
    Batch scratch;
    batch_alloc(&scratch, l->B, l->T);
    int count = 0;
    while (dataloader_next(&pass, &scratch) > 0) count++;
    batch_free(&scratch);
    return count;
}

// ----------------------------------------------------------------------------
// examples: conversations through the model's chat template (tokenizer.c) into ids and
// a loss mask. Text for continued pre-training is cut into windows of T+1 tokens.

typedef struct {
    int truncated, dropped, untrained, windows;
} ExampleCounts;

static void examples_add(Examples* ex, const int* ids, const unsigned char* mask, int len) {
    ex->items = realloc(ex->items, (ex->count + 1) * sizeof(Example));
    if (ex->items == NULL) fail("out of memory tokenizing the dataset");
    Example* e = &ex->items[ex->count++];
    e->len = len;
    e->ids = malloc(len * sizeof(int));
    e->train = malloc(len);
    if (e->ids == NULL || e->train == NULL) fail("out of memory tokenizing the dataset");
    memcpy(e->ids, ids, len * sizeof(int));
    memcpy(e->train, mask, len);
}

// Keeps one rendered conversation: at most T+1 tokens (T inputs and their next-token
// targets), and only if some target is trained.
static void examples_add_rendered(Examples* ex, const Tokens* t, int T, int drop_long, ExampleCounts* counts) {
    int len = (int)t->n;
    if (len > T + 1) {
        if (drop_long) { counts->dropped++; return; }
        counts->truncated++;
        len = T + 1;
    }
    int trained = 0;
    for (int i = 1; i < len; i++) trained += t->mask[i];
    if (trained == 0) { counts->untrained++; return; }
    examples_add(ex, t->ids, t->mask, len);
}

// Plain text: BOS + text + EOS, every token a target, in windows of T+1 that overlap by
// one token so each token is predicted exactly once.
static void examples_add_text(Examples* ex, const Tokenizer* tok, const char* text, int T, ExampleCounts* counts) {
    Tokens t = {0};
    if (tok->bos_id >= 0) tokens_push(&t, tok->bos_id, 0);
    tokenizer_encode_ordinary(tok, text, strlen(text), &t);
    if (tok->eos_id >= 0) tokens_push(&t, tok->eos_id, 1);
    for (size_t i = 1; i < t.n; i++) t.mask[i] = 1;
    for (size_t start = 0; start + 1 < t.n; start += T) {
        int len = (int)(t.n - start < (size_t)T + 1 ? t.n - start : (size_t)T + 1);
        examples_add(ex, t.ids + start, t.mask + start, len);
        counts->windows++;
    }
    tokens_free(&t);
}

// Renders a conversation. Outside the Alpaca template, an Alpaca "input" joins the
// instruction on a new line, as LLaMA-Factory does.
static void render_conversation(const Tokenizer* tok, const ChatOptions* opt, const Conversation* conv, Tokens* out) {
    ChatMessage* messages = malloc((conv->count + 1) * sizeof(ChatMessage));
    char* joined = NULL;
    int n = 0;
    for (int i = 0; i < conv->count; i++) {
        const Message* m = &conv->messages[i];
        if (strcmp(m->role, "input") == 0 && opt->template_kind != CHAT_ALPACA && n > 0) {
            size_t size = strlen(messages[n - 1].content) + strlen(m->content) + 2;
            joined = malloc(size);
            snprintf(joined, size, "%s\n%s", messages[n - 1].content, m->content);
            messages[n - 1].content = joined;
            continue;
        }
        messages[n++] = (ChatMessage){m->role, m->content};
    }
    chat_render(tok, opt, messages, n, out);
    free(joined);
    free(messages);
}

// Reads every file of a comma-separated list and renders it with the chat template.
void examples_load(Examples* ex, const char* files, const Tokenizer* tok, const ChatOptions* opt, int T,
                   int drop_long) {
    memset(ex, 0, sizeof(*ex));
    ExampleCounts counts = {0};
    char* list = strdup(files);
    int records = 0;
    for (char* path = strtok(list, ","); path != NULL; path = strtok(NULL, ",")) {
        Dataset d;
        dataset_load(&d, path);
        records += d.count;
        for (int i = 0; i < d.count; i++) {
            Conversation* conv = &d.items[i];
            if (conv->count == 1 && strcmp(conv->messages[0].role, "text") == 0) {
                examples_add_text(ex, tok, conv->messages[0].content, T, &counts);
                continue;
            }
            Tokens t = {0};
            render_conversation(tok, opt, conv, &t);
            examples_add_rendered(ex, &t, T, drop_long, &counts);
            tokens_free(&t);
        }
        printf("data: %s: %d records (template %s)\n", path, d.count, chat_template_name(opt->template_kind));
        dataset_free(&d);
    }
    free(list);
    if (counts.truncated) printf("data: %d examples longer than %d tokens were truncated "
                                 "(--drop_long drops them instead)\n", counts.truncated, T);
    if (counts.dropped) printf("data: %d examples longer than %d tokens were dropped\n", counts.dropped, T);
    if (counts.untrained) printf("data: %d examples had no token to train on and were skipped\n", counts.untrained);
    if (counts.windows) printf("data: plain text cut into %d windows of up to %d tokens\n", counts.windows, T);
    if (ex->count == 0) {
        fail("%s: none of the %d examples can be trained on: %s", files, records,
             counts.dropped
                 ? "every example is longer than --max_seq_length (raise it, or drop --drop_long to truncate)"
                 : "every target is masked (is the assistant's reply empty, or cut off by --max_seq_length?)");
    }
}

// The built-in demo data when no --data is given: rows of a period-23 token cycle.
void examples_builtin(Examples* ex, int V, int T) {
    ex->count = 64;
    ex->items = calloc(ex->count, sizeof(Example));
    int span = V < 1000 ? V : 1000;
    for (int i = 0; i < ex->count; i++) {
        Example* e = &ex->items[i];
        e->len = T + 1;
        e->ids = malloc(e->len * sizeof(int));
        e->train = malloc(e->len);
        for (int t = 0; t < e->len; t++) {
            e->ids[t] = (int)(mix32((uint32_t)((i * 5 + t) % 23)) % (uint32_t)span);
            e->train[t] = t > 0;
        }
    }
}

#endif  // LLMC_DATALOADER_H
