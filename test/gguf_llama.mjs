// The real llama.cpp (prebuilt inside the npm package node-llama-cpp, its CPU backend, nothing
// compiled or downloaded) on the GGUF files ./train --export_gguf writes.
//
//   node test/gguf_llama.mjs logits GGUF IDS LOGITS_BIN GREEDY_IDS MODE
//       IDS: the prompt, comma-separated; LOGITS_BIN: ./generate --dump_logits of it (T x V float32);
//       GREEDY_IDS: ./generate's greedy continuation. MODE exact: every position's log-probabilities
//       within 1e-4 and the same greedy continuation; MODE top: the top token agrees on >= 95% of
//       positions; MODE report: the figures only. Prints "ok ..." or "FAIL ..." lines.
//   node test/gguf_llama.mjs encode GGUF CORPUS_BIN OUT_JSON
//       llama.cpp's ids and detokenized text of every corpus string, as test/hf_tokenize.js writes them
//   node test/gguf_llama.mjs chat GGUF CASES_JSON OUT_JSON
//       {"cases": [{"messages": [...]}]} -> {"ids": [[...]]}: the prompt (with the generation prompt)
//       node-llama-cpp's chat API renders with the GGUF's own chat template, tokenized by llama.cpp
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { getLlama, LlamaLogLevel, JinjaTemplateChatWrapper } =
    await import(path.join(here, 'node', 'node_modules', 'node-llama-cpp', 'dist', 'index.js'));

// the prebuilt CPU binary only: no GPU probing, never a build or a download
const llama = await getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, logLevel: LlamaLogLevel.error });

function readCorpus(file) {
    const buf = fs.readFileSync(file);
    const out = [];
    for (let i = 0; i < buf.length;) {
        const n = buf.readUInt32LE(i);
        out.push(buf.subarray(i + 4, i + 4 + n).toString('utf8'));
        i += 4 + n;
    }
    return out;
}

const ids = (s) => (s.trim() ? s.trim().split(/[ ,]+/).map(Number) : []);

async function logits(ggufPath, idsText, logitsPath, greedyText, mode) {
    const model = await llama.loadModel({ modelPath: ggufPath });
    const prompt = ids(idsText), greedy = ids(greedyText);
    // an f32 KV cache and no flash attention: the defaults round keys and values to f16 (errors of 5e-3)
    const context = await model.createContext({ contextSize: 256, experimentalKvCacheKeyType: 'F32',
                                                experimentalKvCacheValueType: 'F32', flashAttention: false,
                                                threads: 1 });  // more threads spin on a busy machine: seconds a token
    const sequence = context.getSequence();
    const all = { temperature: 1, topK: 0, topP: 1, minP: 0 };  // the plain softmax of the logits
    const out = await sequence.controlledEvaluate(prompt.map((t) => [t, { generateNext: { probabilities: true,
                                                                                         options: all } }]));
    const ref = new Float32Array(fs.readFileSync(logitsPath).buffer.slice(0));
    const nV = ref.length / prompt.length;
    let maxDiff = 0, agree = 0, worst = -1;
    for (let t = 0; t < prompt.length; t++) {
        const row = ref.subarray(t * nV, (t + 1) * nV);
        let max = -Infinity, argmax = 0;
        for (let v = 0; v < nV; v++) if (row[v] > max) { max = row[v]; argmax = v; }
        let sum = 0;
        for (let v = 0; v < nV; v++) sum += Math.exp(row[v] - max);
        const logZ = max + Math.log(sum);
        const probs = out[t].next.probabilities;
        if (probs.entries().next().value[0] === argmax) agree++;
        for (let v = 0; v < nV; v++) {
            const p = probs.get(v) ?? 0;
            const d = Math.abs(Math.log(p) - (row[v] - logZ));
            if (!(d <= maxDiff)) { maxDiff = d; worst = t; }
        }
    }
    const agreement = agree / prompt.length;
    const name = path.basename(path.dirname(ggufPath));
    console.log(`    ${name}: ${prompt.length} positions x ${nV} tokens, max |log p(llama.cpp) - log p(./generate)| = `
                + `${maxDiff.toExponential(2)} (worst at position ${worst}), top token agrees on `
                + `${(100 * agreement).toFixed(1)}%`);
    const results = [];
    if (mode === 'exact') {
        results.push([maxDiff <= 1e-4, `${name}: log-probabilities match ./generate within 1e-4 (max ${maxDiff.toExponential(2)})`]);
        // greedy continuation in llama.cpp, token by token, on the cache the prompt left
        const got = [];
        let next = out[prompt.length - 1].next.token ?? [...out[prompt.length - 1].next.probabilities.keys()][0];
        while (got.length < greedy.length) {
            got.push(next);
            const step = await sequence.controlledEvaluate([[next, { generateNext: { token: true,
                                                                                      options: { temperature: 0 } } }]]);
            next = step[0].next.token;
        }
        const same = greedy.length > 0 && greedy.every((t, i) => got[i] === t);
        const stopped = greedy.length < 40 ? ' (./generate stopped at an end token)' : '';
        results.push([same, `${name}: greedy ${greedy.length}-token continuation identical to ./generate's${stopped}` +
                            (same ? '' : ` (./generate ${greedy.join(' ')} | llama.cpp ${got.join(' ')})`)]);
        const V = out[0].next.probabilities.size;
        if (V !== nV) results.push([false, `${name}: llama.cpp gives ${V} token probabilities, ./generate ${nV}`]);
    } else if (mode === 'top') {
        results.push([agreement >= 0.95, `${name}: top token agrees with ./generate on ${(100 * agreement).toFixed(1)}% ` +
                                         `of positions (>= 95%)`]);
    }
    for (const [ok, text] of results) console.log(`${ok ? 'ok    ' : 'FAIL  '} ${text}`);
    await context.dispose();
    await model.dispose();
}

async function encode(ggufPath, corpusPath, outPath) {
    const model = await llama.loadModel({ modelPath: ggufPath, vocabOnly: true });
    const all = [], decoded = [];
    for (const s of readCorpus(corpusPath)) {
        const e = Array.from(model.tokenize(s, true));  // special-token text becomes the token, as HF's encode
        all.push(e);
        decoded.push(model.detokenize(e, true));
    }
    fs.writeFileSync(outPath, JSON.stringify({ ids: all, decoded }));
    await model.dispose();
}

async function chat(ggufPath, casesPath, outPath) {
    const model = await llama.loadModel({ modelPath: ggufPath, vocabOnly: true });
    const template = model.fileInfo.metadata.tokenizer.chat_template;
    if (!template) throw new Error(`${ggufPath} has no tokenizer.chat_template`);
    const wrapper = new JinjaTemplateChatWrapper({ template, tokenizer: model.tokenizer });
    const out = [];
    for (const c of JSON.parse(fs.readFileSync(casesPath, 'utf8')).cases) {
        const history = c.messages.map((m) => m.role === 'assistant' ? { type: 'model', response: [m.content] }
                                                                    : { type: m.role, text: m.content });
        history.push({ type: 'model', response: [] });  // the generation prompt: the model's turn comes next
        const { contextText } = wrapper.generateContextState({ chatHistory: history });
        out.push(Array.from(contextText.tokenize(model.tokenizer)));
    }
    fs.writeFileSync(outPath, JSON.stringify({ ids: out }));
    await model.dispose();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'logits') await logits(...args);
else if (mode === 'encode') await encode(...args);
else if (mode === 'chat') await chat(...args);
else { console.error('usage: node test/gguf_llama.mjs logits|encode|chat ...'); process.exit(1); }
await llama.dispose();
