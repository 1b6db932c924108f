// Hugging Face's tokenizers (the Rust library, as the npm package @anush008/tokenizers):
// the reference the tokenizer tests compare tokenizer.c against.
//
//   node test/hf_tokenize.js encode TOKENIZER_JSON CORPUS_BIN OUT_JSON
//       every corpus string (4-byte LE length + bytes; invalid UTF-8 is replaced by
//       U+FFFD on the way in, as any caller of HF must) -> {"ids": [[...]], "decoded": [...]}
//   node test/hf_tokenize.js chat - CASES_JSON OUT_JSON
//       {"cases": [{"tokenizer_json": ..., "text": ...}]} -> {"ids": [[...]]}  (rendered chat templates)
//   node test/hf_tokenize.js bench TOKENIZER_JSON CORPUS_BIN
//       encodes every string once to warm up, then times encoding them all, best of 3;
//       then the same with the corpus joined into one text; prints MB/s for both
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node', 'node_modules', '@anush008', 'tokenizers'));

function readCorpus(file) {
    const buf = fs.readFileSync(file);
    const out = [];
    for (let i = 0; i < buf.length;) {
        const n = buf.readUInt32LE(i);
        out.push(buf.subarray(i + 4, i + 4 + n));
        i += 4 + n;
    }
    return out;
}

async function main() {
    const [mode, tokFile, input, output] = process.argv.slice(2);
    const tok = mode === 'chat' ? null : Tokenizer.fromFile(tokFile);
    const opts = { addSpecialTokens: false };
    if (mode === 'encode') {
        const strings = readCorpus(input).map((b) => b.toString('utf8'));
        const ids = [], decoded = [];
        for (const s of strings) {
            const enc = await tok.encode(s, null, opts);
            const e = Array.from(enc.getIds());
            ids.push(e);
            decoded.push(await tok.decode(e, false));
        }
        fs.writeFileSync(output, JSON.stringify({ ids, decoded }));
    } else if (mode === 'chat') {
        const cases = JSON.parse(fs.readFileSync(input, 'utf8')).cases;
        const loaded = {}, ids = [];
        for (const c of cases) {
            loaded[c.tokenizer_json] = loaded[c.tokenizer_json] || Tokenizer.fromFile(c.tokenizer_json);
            ids.push(Array.from((await loaded[c.tokenizer_json].encode(c.text, null, opts)).getIds()));
        }
        fs.writeFileSync(output, JSON.stringify({ ids }));
    } else if (mode === 'bench') {
        const strings = readCorpus(input).map((b) => b.toString('utf8'));
        const bytes = readCorpus(input).reduce((a, b) => a + b.length, 0);
        let best = Infinity;
        for (let rep = 0; rep < 4; rep++) {   // first pass warms up (HF caches words)
            const t0 = process.hrtime.bigint();
            let n = 0;
            for (const s of strings) n += (await tok.encode(s, null, opts)).getIds().length;
            const dt = Number(process.hrtime.bigint() - t0) / 1e9;
            if (rep > 0) best = Math.min(best, dt);
            if (n === 0) throw new Error('no tokens');
        }
        console.log(`hf per-string ${(bytes / 1e6 / best).toFixed(2)} MB/s ${bytes} bytes ${best.toFixed(3)} s`);
        // the same bytes as one text (one call: no per-call overhead of the Node binding)
        const whole = Buffer.concat(readCorpus(input)).toString('utf8');
        best = Infinity;
        for (let rep = 0; rep < 4; rep++) {
            const t0 = process.hrtime.bigint();
            const n = (await tok.encode(whole, null, opts)).getIds().length;
            const dt = Number(process.hrtime.bigint() - t0) / 1e9;
            if (rep > 0) best = Math.min(best, dt);
            if (n === 0) throw new Error('no tokens');
        }
        console.log(`hf whole-text ${(bytes / 1e6 / best).toFixed(2)} MB/s ${bytes} bytes ${best.toFixed(3)} s`);
    } else {
        console.error('usage: node test/hf_tokenize.js encode|chat|bench TOKENIZER_JSON INPUT [OUTPUT]');
        process.exit(1);
    }
}

main().catch((e) => { console.error('error: ' + e.message); process.exit(1); });
