#!/usr/bin/env python3
"""
Writes the tokenizer test corpus: several thousand strings (over 200 KB) of diverse
text, all written or generated here (no third-party text), deterministic (fixed seed).

  test/tmp/corpus.bin   the strings, each as a 4-byte little-endian length + raw bytes
                        (some are deliberately invalid UTF-8)
  test/tmp/corpus.txt   the valid strings joined by newlines, for training and benchmarks

usage: python3 test/make_corpus.py [OUT_DIR]
"""
import os
import random
import struct
import sys

rng = random.Random(1234)

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "We fine-tune small language models on a laptop, one step at a time.",
    "Tokenizers split text into pieces; each piece gets an integer id.",
    "She said she'd come, but they'll probably be late again, won't they?",
    "IT'S A LOUD SENTENCE, AND IT'LL STAY LOUD. WE'VE CHECKED, WE'RE SURE, I'M SURE, HE'D AGREE.",
    "It's, it'S, IT's, you're, YOU'RE, You'Re, we've, WE'VE, I'm, I'M, they'll, THEY'LL, he'd, HE'D.",
    "Don't panic. Can't stop. Shouldn't've. O'Neil's book isn't 'quoted' like 'this'.",
    "Numbers: 1, 12, 123, 1234, 12345, 123456, 1234567, 12345678, 123456789, 1234567890.",
    "Prices rose 3.5% to $1,299.99 on 2024-07-26 at 10:45:00 UTC (about 1e-3 of the total).",
    "A paragraph ends here.\n\nA new one starts here, after two newlines.",
    "Email me at someone@example.com or visit https://example.com/path?q=1&r=two#frag.",
    "Lists:\n- first item\n- second item\n  - nested item\n* star item\n1. numbered",
    "Tabs\tseparate\tcolumns\tin\tthis\tline, and    spaces    pad    these.",
    "Windows line endings look like this\r\nand this\r\nand end with one\r\n",
    "Mixed CASE words: HeLLo WoRLD, iPhone, eBay, McDonald, XMLHttpRequest, snake_case, kebab-case.",
    "Quotes \"double\", 'single', `back`, \u201ccurly\u201d, \u2018curly single\u2019, \u00abguillemets\u00bb.",
    "Dashes - en \u2013 em \u2014 and ellipsis\u2026 plus bullets \u2022 and arrows \u2192 \u21d2.",
    "Caf\u00e9, na\u00efve, r\u00e9sum\u00e9, \u00fcber, stra\u00dfe, \u00e5ngstr\u00f6m, \u0153uvre, fa\u00e7ade, pi\u00f1ata.",
    "Greek: \u03b1\u03b2\u03b3 \u0394\u03b5\u03bb\u03c4\u03b1; Cyrillic: \u043f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440; Hebrew: \u05e9\u05dc\u05d5\u05dd.",
    "Math: x\u00b2 + y\u00b2 = z\u00b2, \u2211 i = n(n+1)/2, \u221a2 \u2248 1.414, \u221e > 10\u00b9\u2070\u2070, \u00bd + \u00bc = \u00be.",
]

CHINESE = [
    "\u6211\u4eec\u5728\u81ea\u5df1\u7684\u7535\u8111\u4e0a\u5fae\u8c03\u8bed\u8a00\u6a21\u578b\u3002",
    "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u5427\uff01",
    "\u8fd9\u4e2a\u5206\u8bcd\u5668\u9700\u8981\u548c\u53c2\u8003\u5b9e\u73b0\u5b8c\u5168\u4e00\u81f4\u3002",
    "\u5b66\u4e60\u7387\u8bbe\u4e3a\u4e09\u4e58\u5341\u7684\u8d1f\u56db\u6b21\u65b9\uff0c\u6279\u91cf\u5927\u5c0f\u4e3a\u516b\u3002",
    "\u4ed6\u8bf4\uff1a\u201c\u6211\u660e\u5929\u518d\u6765\u3002\u201d\u7136\u540e\u5c31\u8d70\u4e86\u3002",
    "\u4e2d\u6587\u6587\u672c\u6ca1\u6709\u7a7a\u683c\uff0c\u6240\u4ee5\u6574\u53e5\u8bdd\u4f1a\u88ab\u5f53\u4f5c\u4e00\u4e2a\u8bcd\u3002",
    "\u6570\u636e\u96c6\u5305\u542b\u4e00\u4e07\u4e8c\u5343\u6761\u5bf9\u8bdd\uff0c\u5e73\u5747\u957f\u5ea6\u4e3a\u4e09\u767e\u4e2a\u5b57\u3002",
    "\u7b2c1\u7ae0\uff1a\u5f00\u59cb\uff082024\u5e747\u670826\u65e5\uff09",
]

JAPANESE = [
    "\u79c1\u306f\u6bce\u671d\u30b3\u30fc\u30d2\u30fc\u3092\u98f2\u307f\u307e\u3059\u3002",
    "\u3053\u306e\u30e2\u30c7\u30eb\u306f\u65e5\u672c\u8a9e\u3082\u8a71\u305b\u307e\u3059\u304b\uff1f",
    "\u30c8\u30fc\u30af\u30ca\u30a4\u30b6\u30fc\u306e\u30c6\u30b9\u30c8\u3092\u66f8\u3044\u3066\u3044\u307e\u3059\u3002",
    "\u6771\u4eac\u306f\u5927\u304d\u306a\u90fd\u5e02\u3067\u3001\u4eba\u304c\u305f\u304f\u3055\u3093\u3044\u307e\u3059\u3002",
    "\uff76\uff80\uff76\uff85\u3068\u3072\u3089\u304c\u306a\u3068\u6f22\u5b57\u304c\u6df7\u3056\u3063\u305f\u6587\u3002",
]

KOREAN = [
    "\uc548\ub155\ud558\uc138\uc694, \ub9cc\ub098\uc11c \ubc18\uac11\uc2b5\ub2c8\ub2e4.",
    "\uc624\ub298\uc740 \ub0a0\uc528\uac00 \ub9e4\uc6b0 \uc88b\uc2b5\ub2c8\ub2e4.",
    "\uc774 \ubaa8\ub378\uc744 \ud55c\uad6d\uc5b4 \ub370\uc774\ud130\ub85c \ubbf8\uc138 \uc870\uc815\ud588\uc2b5\ub2c8\ub2e4.",
    "\ud55c\uae00\uc740 \uc790\ubaa8\ub97c \ubaa8\uc544\uc11c \uae00\uc790\ub97c \ub9cc\ub4ed\ub2c8\ub2e4: \u1100\u1161\u11a8.",
]

ARABIC = [
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0643\u0645 \u0641\u064a \u0647\u0630\u0627 \u0627\u0644\u0627\u062e\u062a\u0628\u0627\u0631.",
    "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062a\u0643\u062a\u0628 \u0645\u0646 \u0627\u0644\u064a\u0645\u064a\u0646 \u0625\u0644\u0649 \u0627\u0644\u064a\u0633\u0627\u0631.",
    "\u0627\u0644\u0623\u0631\u0642\u0627\u0645: \u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669 \u0648 123.",
    "\u0643\u064e\u062a\u064e\u0628\u064e \u0627\u0644\u0637\u0651\u064e\u0627\u0644\u0650\u0628\u064f \u0627\u0644\u062f\u0651\u064e\u0631\u0652\u0633\u064e.",
]

HINDI = [
    "\u0928\u092e\u0938\u094d\u0924\u0947, \u0906\u092a \u0915\u0948\u0938\u0947 \u0939\u0948\u0902?",
    "\u092f\u0939 \u092e\u0949\u0921\u0932 \u0939\u093f\u0902\u0926\u0940 \u092d\u0940 \u0938\u092e\u091d\u0924\u093e \u0939\u0948\u0964",
    "\u0938\u0902\u0916\u094d\u092f\u093e\u090f\u0901: \u0967\u0968\u0969\u096a\u096b \u0914\u0930 2024\u0964",
]

THAI = [
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a \u0e22\u0e34\u0e19\u0e14\u0e35\u0e17\u0e35\u0e48\u0e44\u0e14\u0e49\u0e23\u0e39\u0e49\u0e08\u0e31\u0e01",
    "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e44\u0e21\u0e48\u0e21\u0e35\u0e0a\u0e48\u0e2d\u0e07\u0e27\u0e48\u0e32\u0e07\u0e23\u0e30\u0e2b\u0e27\u0e48\u0e32\u0e07\u0e04\u0e33",
    "\u0e15\u0e31\u0e27\u0e40\u0e25\u0e02\u0e44\u0e17\u0e22: \u0e51\u0e52\u0e53\u0e54\u0e55",
]

EMOJI = [
    "\U0001F600", "\U0001F602", "\U0001F44D", "\U0001F44D\U0001F3FD", "\u2764\ufe0f", "\U0001F525",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466", "\U0001F469\u200d\U0001F4BB",
    "\U0001F3F3\ufe0f\u200d\U0001F308", "\U0001F1EF\U0001F1F5", "\U0001F1FA\U0001F1F8", "\U0001F9D1\U0001F3FF\u200d\U0001F91D\u200d\U0001F9D1\U0001F3FB",
    "#\ufe0f\u20e3", "\u263a", "\U0001F916", "\U0001F680",
]

CODE = [
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "for (int i = 0; i < n; i++) {\n\tsum += x[i] * y[i];\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }\n",
    "const f = async (x) => { await fetch(`/api/${x}`); };  // arrow\n",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;\n",
    "    if x:\n        y = [i**2 for i in range(10) if i % 2 == 0]\n",
    "<div class=\"box\"><p>Hello &amp; welcome</p></div>\n",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}\n",
    "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![0xff; 16]; Ok(()) }\n",
    "x = a->b->c; y = *p++; z = ~mask & 0x7fffffff; w <<= 3; q ||= r;\n",
    "$ ls -la | grep '^d' && echo done >> log.txt 2>&1\n",
]

SPECIAL_TEXT = [
    "<|begin_of_text|>Hello<|end_of_text|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "text with <|eot_id|> in the middle and <|reserved_special_token_5|> too",
    "<s>[INST] question [/INST] answer </s>",
    "<unk> and <s> and </s> and <|eot_id|><|eot_id|>",
    "almost special: <|eot_id| <|eot_id <eot_id|> <| |> <|> < s> </ s>",
    "<|begin_of_text|><|begin_of_text|>",
]

WHITESPACE_CHARS = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\u200b", "\u2028", "\u0085", "\x0b", "\x0c", "\u1680", "\u202f"]


def random_from_ranges(ranges, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


SCRIPT_RANGES = {
    "han": [(0x4E00, 0x9FFF)],
    "hiragana_katakana": [(0x3041, 0x3096), (0x30A1, 0x30FA)],
    "hangul": [(0xAC00, 0xD7A3)],
    "arabic": [(0x0621, 0x064A)],
    "devanagari": [(0x0905, 0x0939), (0x093E, 0x094C)],
    "thai": [(0x0E01, 0x0E30), (0x0E40, 0x0E4E)],
    "latin_ext": [(0x00C0, 0x024F)],
    "symbols": [(0x2190, 0x21FF), (0x2200, 0x22FF), (0x2500, 0x257F), (0x25A0, 0x25FF)],
    "cjk_ext_b": [(0x20000, 0x2A6DF)],
    "digits_all": [(0x0660, 0x0669), (0x06F0, 0x06F9), (0x0966, 0x096F), (0xFF10, 0xFF19), (0x2160, 0x2188), (0x00B2, 0x00B3), (0x2070, 0x2079)],
    "combining": [(0x0300, 0x036F)],
    "any_bmp": [(0x0020, 0xD7FF), (0xE000, 0xFFFD)],
    "any_astral": [(0x10000, 0x10FFFF)],
    # letters and numbers new in Unicode 15.0, 15.1 and 16.0 (Kaktovik numerals, CJK
    # extensions H and I, Kawi, Nag Mundari, Garay, Tulu-Tigalari, Kirat Rai, ...)
    "new_unicode": [(0x1D2C0, 0x1D2D3), (0x31350, 0x323AF), (0x11F04, 0x11F10), (0x1E4D0, 0x1E4F9), (0x2EBF0, 0x2EE5D),
                    (0x10D40, 0x10D65), (0x11380, 0x11389), (0x16D40, 0x16D79), (0x1E5D0, 0x1E5FA), (0x1CCF0, 0x1CCF9)],
}


def number_strings():
    out = []
    for length in range(1, 41):
        out.append("".join(rng.choice("0123456789") for _ in range(length)))
    for length in range(1, 13):
        out.append("x" + "7" * length + "y " + " ".join(str(rng.randint(0, 10 ** length)) for _ in range(5)))
    out.append(" ".join(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 6)}f}" for _ in range(30)))
    out.append(",".join(str(i) for i in range(0, 2000, 7)))
    out.append("\u0661\u0662\u0663\u0664\u0665 \u0967\u0968\u0969\u096a \uff11\uff12\uff13\uff14\uff15 \u2160\u2161\u2162\u2163 \u00b2\u00b3\u00b9 \u00bd\u00bc")
    return out


def whitespace_strings():
    out = []
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(WHITESPACE_CHARS) * rng.randint(1, 5))
            parts.append(rng.choice(["word", "A", "1", "12345", ".", "!!", "\u4e2d\u6587", "'s", "'LL", "x", "(", ")"]))
        if rng.random() < 0.5:
            parts.append(rng.choice(WHITESPACE_CHARS) * rng.randint(1, 4))
        out.append("".join(parts))
    out += [" ", "  ", "   ", "\n", "\n\n", "\n\n\n", " \n", "\n ", " \n \n ", "\t\t", "\r\n\r\n", "\r", "x\r\n", "a \t b", "  leading", "trailing  ", "\n\nleading newlines", "tail\n\n\n"]
    return out


def long_runs():
    out = []
    for ch in ["a", " ", "\n", "!", "7", "\u4e2d", "\U0001F600", "-", "=", "\t", "ab", "\u00e9", "\u0e01"]:
        for n in [50, 333, 1000, 4000]:
            out.append(ch * n)
    out.append("a" * 5000 + " " + "b" * 5000)
    out.append(("ha" * 2000) + "!")
    return out


def contraction_strings():
    forms = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
    out = []
    for _ in range(120):
        words = []
        for _ in range(rng.randint(3, 10)):
            w = rng.choice(["it", "we", "they", "you", "I", "he", "she", "don", "can", "won", "o"])
            f = rng.choice(forms)
            f = "".join(c.upper() if rng.random() < 0.5 else c for c in f)
            words.append(w + f + rng.choice(["", "", "x", "s", " "]))
        out.append(" ".join(words))
    out += ["'s'S't'T're'RE'rE'Re've'VE'm'M'll'LL'lL'd'D", "''s ''t 's's's", "'\u017f 'ſa 'K", "'", "''", "'''", "' s", "'\n's"]
    return out


def invalid_utf8():
    """Raw bytes: invalid sequences of every kind, inside and around text."""
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xc2", b"\xe0\x80\xaf", b"\xe0\xa0", b"\xed\xa0\x80",
           b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf0\x90\x80", b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xff", b"\xfe\xff",
           b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xf8\x88\x80\x80\x80"]
    out = []
    for b in bad:
        out.append(b)
        out.append(b"abc" + b + b"def")
        out.append(b + b" " + b + b"\n" + b)
    for _ in range(60):
        parts = []
        for _ in range(rng.randint(2, 8)):
            parts.append(rng.choice(bad))
            parts.append(rng.choice(ENGLISH + CHINESE + EMOJI).encode()[: rng.randint(0, 40)])
        out.append(b"".join(parts))
    return out


def mixed_paragraphs(n):
    pools = [ENGLISH, CHINESE, JAPANESE, KOREAN, ARABIC, HINDI, THAI, CODE]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(2, 12)):
            r = rng.random()
            if r < 0.6:
                parts.append(rng.choice(rng.choice(pools)))
            elif r < 0.7:
                parts.append(rng.choice(EMOJI) * rng.randint(1, 3))
            elif r < 0.8:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 15))))
            elif r < 0.9:
                name = rng.choice(list(SCRIPT_RANGES))
                parts.append(random_from_ranges(SCRIPT_RANGES[name], rng.randint(1, 30)))
            else:
                parts.append(rng.choice(SPECIAL_TEXT))
            parts.append(rng.choice([" ", " ", "", "\n", "\n\n", "  ", "\t", "\r\n", ", ", ". "]))
        out.append("".join(parts))
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "tmp", "tokenizer")
    os.makedirs(out_dir, exist_ok=True)
    strings = []
    for pool in [ENGLISH, CHINESE, JAPANESE, KOREAN, ARABIC, HINDI, THAI, EMOJI, CODE, SPECIAL_TEXT]:
        strings += pool
    strings += ["".join(EMOJI), " ".join(EMOJI), "".join(CHINESE), " ".join(JAPANESE), "\n".join(KOREAN), " ".join(ARABIC), "".join(HINDI), "".join(THAI)]
    strings += ["This is a test sentence.", "Hello world", " ", "\n\n", "333333333", ""]
    strings += number_strings() + whitespace_strings() + long_runs() + contraction_strings()
    for name, ranges in SCRIPT_RANGES.items():
        for _ in range(25):
            strings.append(random_from_ranges(ranges, rng.randint(1, 60)))
            strings.append(" ".join(random_from_ranges(ranges, rng.randint(1, 8)) for _ in range(rng.randint(1, 10))))
    for _ in range(40):   # contexts where the class of a character changes the split
        ch = random_from_ranges(SCRIPT_RANGES["new_unicode"], 1)
        strings.append(f"{ch}'s {ch}{ch}{ch}{ch} x{ch}y 1{ch}2 !{ch}! {ch}\n\n")
    strings += mixed_paragraphs(1500)
    data = [s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s for s in strings]
    data += invalid_utf8()
    with open(os.path.join(out_dir, "corpus.bin"), "wb") as f:
        for d in data:
            f.write(struct.pack("<I", len(d)))
            f.write(d)
    valid = [d for d in data if _is_valid(d)]
    with open(os.path.join(out_dir, "corpus.txt"), "wb") as f:
        f.write(b"\n".join(valid))
    total = sum(len(d) for d in data)
    print(f"wrote {out_dir}/corpus.bin: {len(data)} strings, {total} bytes ({total / 1024:.0f} KB)")


def _is_valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


if __name__ == "__main__":
    main()
