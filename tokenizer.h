/*
tokenizer.h: the tokenizer API that train.c, generate.c and the tests share.

The implementation is tokenizer.c; link it into your program with its CLI left out:
    gcc -O3 -DTRAIN_NO_MAIN -c tokenizer.c -o tokenizer.o
    gcc -O3 your_program.c tokenizer.o -o your_program -lcjson -lm
Every function that can fail on user input (a bad tokenizer.json, an id out of range, a
template the tokenizer cannot render) prints one line naming the file and the problem
and exits 1, like the rest of the project. A hostile tokenizer.json is refused the same
way: ids, sizes and every field are checked before use, so it cannot crash, hang or
allocate more than a small multiple of its own size.
*/
#ifndef TOKENIZER_H
#define TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// growable buffers (no fixed buffer anywhere can be overflowed by user text)

typedef struct {
    char* data;     // always NUL-terminated; may hold NUL bytes inside
    size_t len;
    size_t cap;
} TextBuffer;

typedef struct {
    int* ids;              // (n,) token ids
    unsigned char* mask;   // (n,) 1 where the token is a training target, else 0
    size_t n;
    size_t cap;
} Tokens;

void text_append(TextBuffer* b, const void* bytes, size_t len);
void text_free(TextBuffer* b);
void tokens_push(Tokens* t, int id, int mask);
void tokens_free(Tokens* t);

// ----------------------------------------------------------------------------
// the tokenizer

typedef enum {
    TOKENIZER_BYTE_LEVEL = 1,     // Llama 3: Llama 3 split regex + GPT-2 byte mapping + BPE
    TOKENIZER_SENTENCEPIECE = 2,  // Llama 2: "▁" for spaces, BPE over characters, byte fallback
} TokenizerFamily;

// The fields below the line are internal; read the public ones freely.
typedef struct {
    TokenizerFamily family;
    int vocab_size;        // V: every valid id is in [0, V) (model vocabulary + added tokens)
    int bos_id, eos_id;    // from tokenizer_config.json, else the usual names; -1 if none
    int eot_id;            // <|eot_id|> when present, else eos_id: ends an assistant turn
    int n_merges;
    char* chat_template;   // tokenizer_config.json "chat_template" (Jinja text) or NULL
    // ------------------------------------------------------------------------
    char* path;                   // tokenizer.json, for error messages
    char* key_bytes;              // BPE lookup keys of all ids, concatenated (byte-level: raw bytes)
    uint32_t* key_start;          // (V+1,) id's key is key_bytes[key_start[id] .. key_start[id+1])
    char* text_bytes;             // what each id decodes to, concatenated
    uint32_t* text_start;         // (V+1,)
    unsigned char* flags;         // (V,) TOKEN_* bits
    int32_t* vocab_slots;         // open-addressing hash of keys -> id, -1 = empty
    uint32_t vocab_mask;
    uint64_t* merge_keys;         // open-addressing hash: (left << 32 | right) -> value
    uint64_t* merge_values;       // rank << 32 | merged id
    uint32_t merge_mask;
    int byte_token[256];          // id of each byte's token (byte-level char, or <0xXX>); -1 if none
    int ignore_merges;            // emit a whole pre-token directly when it is in the vocabulary
    int prepend_space;            // SentencePiece: 0 never, 1 every piece, 2 first piece only
    int metaspace;                // the Metaspace pre-tokenizer: no "▁" prepended before a space
    int unk_id, fuse_unk;
    int n_added;
    int32_t* added_slots;         // open-addressing hash of added tokens' texts -> id, -1 = empty
    uint32_t added_mask;
    uint32_t* added_lengths;      // the distinct lengths of added tokens, longest first
    int n_added_lengths;
    unsigned char added_first_byte[256];
} Tokenizer;

// Loads model_dir/tokenizer.json (+ tokenizer_config.json beside it, if present), or a
// tokenizer.json path. The family (byte-level or SentencePiece) comes from the file's contents.
void tokenizer_load(Tokenizer* t, const char* model_dir_or_file);
// The same from the text of a tokenizer.json in memory (json[0..len), need not end in a
// NUL); name stands for the file in error messages. No tokenizer_config.json is read:
// bos/eos come from the usual token names.
void tokenizer_load_text(Tokenizer* t, const char* json, size_t len, const char* name);
void tokenizer_free(Tokenizer* t);
// Id of a token by its exact text (added tokens included), or -1.
int tokenizer_token_id(const Tokenizer* t, const char* text);
// Bits of flags[id]: an added token, a special one (control), a SentencePiece byte token
// <0xAB>, an id that has a token at all.
enum { TOKEN_ADDED = 1, TOKEN_SPECIAL = 2, TOKEN_BYTE = 4, TOKEN_USED = 8 };
// Appends id's token as tokenizer.json spells it: byte-level "\u0120the", SentencePiece
// "\u2581the", an added token its own text. For exporters (GGUF) that store the vocabulary.
void tokenizer_spelling(const Tokenizer* t, int id, TextBuffer* out);
// The merges in rank order: left + right -> merged (ids; n_merges entries each). Returns
// the count (a pair listed twice is kept once).
int tokenizer_merge_list(const Tokenizer* t, int* left, int* right, int* merged);

// Appends the ids of text[0..len) to out (mask 0), as Hugging Face's
// tokenizer.encode(text, add_special_tokens=False): added/special tokens written in the
// text become their ids, no BOS is added, invalid UTF-8 becomes U+FFFD first.
void tokenizer_encode(const Tokenizer* t, const char* text, size_t len, Tokens* out);
// The same, but special-token text is encoded as ordinary text (for untrusted content).
void tokenizer_encode_ordinary(const Tokenizer* t, const char* text, size_t len, Tokens* out);

// Appends the text of ids[0..n) to out, as Hugging Face's decode; skip_special drops
// special tokens. An id outside [0, V) is an error.
void tokenizer_decode(const Tokenizer* t, const int* ids, size_t n, int skip_special, TextBuffer* out);

// Streaming decode for generation: push one id at a time and print what comes back.
// Never returns half a UTF-8 character; bytes of an unfinished character wait for the
// next token, invalid bytes become U+FFFD as in tokenizer_decode.
typedef struct {
    const Tokenizer* t;
    int skip_special;
    int started;                 // SentencePiece: the first leading space is dropped
    unsigned char pending[4];    // bytes of a character not yet complete
    int n_pending;
    TextBuffer out;
} StreamDecoder;
void stream_decoder_init(StreamDecoder* d, const Tokenizer* t, int skip_special);
const char* stream_decoder_push(StreamDecoder* d, int id);   // "" when nothing is complete yet
const char* stream_decoder_flush(StreamDecoder* d);          // at end of generation
void stream_decoder_free(StreamDecoder* d);

// ----------------------------------------------------------------------------
// chat templates: messages -> ids + loss mask, in one place for training and inference

typedef enum { CHAT_PLAIN, CHAT_ALPACA, CHAT_LLAMA2, CHAT_LLAMA3, CHAT_LLAMA31, CHAT_LLAMA32 } ChatTemplate;

typedef struct {
    const char* role;      // "system", "user", "assistant" (alpaca also takes "input")
    const char* content;
} ChatMessage;

typedef struct {
    ChatTemplate template_kind;
    const char* date;            // llama3.1/3.2 "Today Date"; NULL: "26 Jul 2024" (3.1), today (3.2)
    int train_on_inputs;         // 1: every token is a target, not just the assistant's
    int add_generation_prompt;   // 1: end with the assistant header, for inference
    int parse_special_in_content;  // 1: "<|eot_id|>" written in a message becomes the control
                                   // token, as HF's apply_chat_template does; 0 (default): text
} ChatOptions;

// The template the tokenizer's own chat_template / special tokens call for.
ChatTemplate chat_template_default(const Tokenizer* t);
// "plain", "alpaca", "llama2", "llama3", "llama3.1", "llama3.2"; an unknown name is an error.
ChatTemplate chat_template_from_name(const char* name);
const char* chat_template_name(ChatTemplate kind);
ChatOptions chat_options_default(const Tokenizer* t);
// Appends the rendered conversation to out. mask is 1 exactly on the assistant's content
// and the token that ends its turn (<|eot_id|> or eos), unless train_on_inputs.
// Message content is not parsed for special tokens: "<|eot_id|>" typed by a user stays text
// (no prompt injection through data), unless opt->parse_special_in_content.
void chat_render(const Tokenizer* t, const ChatOptions* opt, const ChatMessage* messages, int n_messages, Tokens* out);

// ----------------------------------------------------------------------------
// BPE trainer: learns a byte-level vocabulary of vocab_size tokens (256 bytes + merges)
// from the text in corpus[0..len), with the Llama 3 pre-tokenizer, and writes
// out_dir/tokenizer.json (+ tokenizer_config.json) with the 256 Llama 3 special tokens
// appended after the vocabulary, loadable by Hugging Face tokenizers.
void tokenizer_train(const char* corpus, size_t len, int vocab_size, const char* out_dir);

#endif
