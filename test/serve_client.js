// ./serve against the official OpenAI client and raw sockets (run by test/test_serve.sh):
//   node test/serve_client.js PORT SERVER_PID SERVER_LOG GENERATE MODEL ADAPTER
// Every answer is compared with ./generate --prompt's for the same seed and settings;
// bad requests get their status (or a clean close) and the server answers normally after
// each; load: 200 sequential requests and 8 clients x 10 at once, RSS before and after.
// Prints "ok ..." / "FAIL ..." lines and ends with "N passed, M failed".
const fs = require('fs');
const net = require('net');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
const OpenAI = require(path.join(__dirname, 'node', 'node_modules', 'openai')).default;

const [port, serverPid, serverLog, generate, model, adapter] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'not-needed', timeout: 120000, maxRetries: 0 });
let passed = 0, failed = 0;
const ok = (what) => { console.log(`ok     ${what}`); passed++; };
const bad = (what, detail) => {
  console.log(`FAIL   ${what}`);
  if (detail !== undefined) console.log(`         | ${String(detail).slice(0, 600).replace(/\n/g, '\n         | ')}`);
  failed++;
};
const check = (cond, what, detail) => (cond ? ok(what) : bad(what, detail));

// ./generate --prompt: the answer, its token counts (--dump_ids) and why it stopped
const generated = new Map();
function expected(c) {
  const key = JSON.stringify(c);
  if (generated.has(key)) return generated.get(key);
  const ids = path.join(path.dirname(serverLog), `serve_ids_${process.pid}.txt`);
  const run = (maxTokens) => {
    fs.rmSync(ids, { force: true });
    const args = ['--model', model, '--adapter', adapter, '--prompt', c.prompt, '--seed', String(c.seed),
                  '--temperature', String(c.temperature), '--top_p', String(c.top_p),
                  '--max_new_tokens', String(maxTokens), '--dump_ids', ids].concat(c.system ? ['--system', c.system] : []);
    const r = spawnSync(generate, args, { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`${generate} ${args.join(' ')}: ${r.stderr}`);
    const count = fs.readFileSync(ids, 'utf8').trim().split(' ').length;  // the prompt's ids and the answer's
    fs.rmSync(ids, { force: true });
    return { out: r.stdout, count, endToken: r.stderr.includes('[stopped: end token') };
  };
  const whole = run(c.max_tokens), promptTokens = run(1).count - 1;
  const e = { text: whole.out.replace(/\n$/, ''), prompt_tokens: promptTokens, completion_tokens: whole.count - promptTokens };
  e.finish_reason = whole.endToken ? 'stop' : 'length';
  generated.set(key, e);
  return e;
}

function request(c) {
  const messages = (c.system ? [{ role: 'system', content: c.system }] : []).concat({ role: 'user', content: c.prompt });
  return { model: path.basename(adapter), messages, seed: c.seed, temperature: c.temperature, top_p: c.top_p,
           max_tokens: c.max_tokens };
}

async function askWhole(c) {
  const r = await client.chat.completions.create(request(c));
  return { text: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason,
           prompt_tokens: r.usage.prompt_tokens, completion_tokens: r.usage.completion_tokens };
}

async function askStreamed(c) {
  const stream = await client.chat.completions.create({ ...request(c), stream: true });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0].delta.content || '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, finish_reason: finish, prompt_tokens: usage && usage.prompt_tokens,
           completion_tokens: usage && usage.completion_tokens, chunks };
}

const same = (got, want) => got.text === want.text && got.finish_reason === want.finish_reason &&
  got.prompt_tokens === want.prompt_tokens && got.completion_tokens === want.completion_tokens;
const show = (got, want) => `got  ${JSON.stringify(got)}\nwant ${JSON.stringify(want)}`;

const CASES = [
  { prompt: 'What is the capital of France?', seed: 7, temperature: 0.7, top_p: 0.9, max_tokens: 40 },
  { prompt: '天空为什么是蓝色的？', seed: 11, temperature: 0.9, top_p: 0.95, max_tokens: 24 },
  { prompt: 'Tell me about the sea.', system: 'You are a helpful assistant.', seed: 3, temperature: 0, top_p: 1,
    max_tokens: 30 },
];
// short ones for the load
const LOAD = CASES.map((c, i) => ({ ...c, max_tokens: 8, seed: 100 + i }));

// --- raw HTTP: bytes out, the reply (or the close) back, bounded in time
function raw(bytes, { pieces = 1, delayMs = 0, waitMs = 10000, endAfterWrite = false } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.setNoDelay(true);
    const chunks = [];
    const started = Date.now();
    let done = false;
    const finish = (how) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.[01] (\d+)/.exec(text);
      resolve({ how, status: m ? Number(m[1]) : 0, text, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish('timeout'), waitMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('end', () => finish('closed'));
    socket.on('error', () => finish('reset'));
    socket.on('connect', async () => {
      const size = Math.ceil(bytes.length / pieces);
      for (let i = 0; i < bytes.length && !done; i += size) {
        socket.write(bytes.subarray(i, i + size));
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      }
      if (endAfterWrite) socket.end();
    });
  });
}
function post(body, extraHeaders = '') {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${b.length}\r\nConnection: close\r\n${extraHeaders}\r\n`), b]);
}
const get = (p) => Buffer.from(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
const errorBody = (r) => { try { return JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).error; } catch { return null; } };

function rssKiB() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${serverPid}/status`, 'utf8'));
  return Number(m[1]);
}

async function stillServes(after) {
  const c = LOAD[0], want = expected(c);
  try {
    const got = await askWhole(c);
    check(same(got, want), `after ${after}: a normal request is answered correctly`, show(got, want));
  } catch (e) {
    bad(`after ${after}: a normal request failed`, e);
  }
}

async function openaiClient() {
  const list = await client.models.list();
  check(list.data.length === 1 && list.data[0].id === path.basename(adapter),
        `GET /v1/models lists the one model "${path.basename(adapter)}"`, JSON.stringify(list.data));
  for (const c of CASES) {
    const want = expected(c);
    const whole = await askWhole(c);
    check(same(whole, want), `openai client, whole answer = ./generate --prompt (seed ${c.seed}, temperature ` +
          `${c.temperature}, top_p ${c.top_p}): ${want.completion_tokens} tokens, ${want.finish_reason}, ` +
          `"${want.text.slice(0, 40)}..."`, show(whole, want));
    const streamed = await askStreamed(c);
    check(same(streamed, want) && streamed.chunks > 2, `openai client, streamed answer (${streamed.chunks} chunks) ` +
          `= ./generate --prompt, seed ${c.seed}`, show(streamed, want));
  }
  // stop strings end the answer before them, streamed or not, and hold back nothing else
  const c = { ...CASES[2], prompt: 'What is the capital of France?' };
  const full = expected(c).text, cut = full.indexOf('Paris');
  const stopped = await client.chat.completions.create({ ...request(c), stop: ['Paris', 'zzz'] });
  check(cut > 0 && stopped.choices[0].message.content === full.slice(0, cut) &&
        stopped.choices[0].finish_reason === 'stop', `stop ["Paris"]: the answer ends before it ` +
        `("${full.slice(0, cut)}"), finish_reason stop`, JSON.stringify(stopped.choices[0]));
  const s2 = await client.chat.completions.create({ ...request(c), stop: 'Paris', stream: true });
  let text = '';
  for await (const chunk of s2) text += chunk.choices[0].delta.content || '';
  check(text === full.slice(0, cut), 'stop "Paris", streamed: the same text', `${text} / ${full.slice(0, cut)}`);

  // a three-turn chat, each turn's history rendered with the model's template
  const messages = [{ role: 'system', content: 'You are a pirate.' }];
  const turns = ['What is the capital of France?', 'And of Italy?', '天空为什么是蓝色的？'];
  const answers = [];
  let lastPrompt = 0, grows = true;
  for (const t of turns) {
    messages.push({ role: 'user', content: t });
    const r = await client.chat.completions.create({ model: path.basename(adapter), messages, max_tokens: 60 });
    const a = r.choices[0].message.content;
    answers.push(a);
    grows = grows && r.usage.prompt_tokens > lastPrompt;
    lastPrompt = r.usage.prompt_tokens + r.usage.completion_tokens;
    messages.push({ role: 'assistant', content: a });
  }
  check(grows && answers.every((a) => a.length > 0) && answers[0].startsWith('Arr') && answers[2].startsWith('嘿'),
        `three-turn chat: each prompt holds the turns before it (${lastPrompt} tokens at the end); answers ` +
        `"${answers[0].slice(0, 30)}...", "${answers[2].slice(0, 12)}..."`, JSON.stringify(answers));
  // the same conversation through ./generate --chat (greedy; its cache keeps the earlier turns)
  const chat = execFileSync(generate, ['--model', model, '--adapter', adapter, '--chat', '--system', 'You are a pirate.',
                                       '--max_new_tokens', '60'],
                            { input: turns.join('\n') + '\n', encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'],
                              timeout: 60000 });
  check(chat === answers.map((a) => a + '\n').join(''), 'three-turn chat = ./generate --chat with the same turns',
        `${JSON.stringify(chat)}\n${JSON.stringify(answers)}`);
}

async function badRequests() {
  const valid = JSON.stringify(request(LOAD[0]));
  const cases = [
    ['malformed JSON', post('{"messages": [{"role": "user", "content": "hi"'), 400],
    ['a body that is not an object', post('[1, 2]'), 400],
    ['messages not a list', post('{"messages": "hello"}'), 400],
    ['content not a string', post('{"messages": [{"role": "user", "content": 42}]}'), 400],
    ['an unknown role', post('{"messages": [{"role": "wizard", "content": "hi"}]}'), 400],
    ['ending with the assistant', post('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", ' +
                                       '"content": "b"}]}'), 400],
    ['temperature a string', post('{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}'), 400],
    ['max_tokens 0', post('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}'), 400],
    ['max_tokens 1.5', post('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5}'), 400],
    ['seed -1', post('{"messages": [{"role": "user", "content": "hi"}], "seed": -1}'), 400],
    ['stream "yes"', post('{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}'), 400],
    ['stop with 5 strings', post('{"messages": [{"role": "user", "content": "hi"}], "stop": ["a","b","c","d","e"]}'),
     400],
    ['a prompt longer than the context', post(JSON.stringify({ messages: [{ role: 'user',
                                                              content: 'word '.repeat(5000) }] })), 400],
    ['nesting 100000 deep', post('['.repeat(100000)), 400],
    ['an unknown model', post('{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'), 404],
    ['an unknown endpoint', post(valid).toString().replace('/v1/chat/completions', '/v1/embeddings'), 404],
    ['GET /v1/chat/completions', get('/v1/chat/completions'), 405],
    ['DELETE /v1/models', Buffer.from('DELETE /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 405],
    // the head and the body's first KiB: the answer comes before the rest (sent, it would meet a closed socket)
    ['a 2 MiB body (Content-Length)', post(Buffer.alloc(2 << 20, 0x61)).subarray(0, 1200), 413],
    ['a 2 MiB chunked body', Buffer.concat([Buffer.from('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
       'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n'), ...Array.from({ length: 32 }, () =>
       Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(65536, 0x61), Buffer.from('\r\n')])),
       Buffer.from('0\r\n\r\n')]), 413],
  ];
  for (const [what, bytes, status] of cases) {
    const r = await raw(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
    const e = errorBody(r);
    check(r.status === status && e && typeof e.message === 'string' && typeof e.type === 'string',
          `${what}: ${status} with an OpenAI-shaped error (${e ? e.message.slice(0, 70) : 'none'})`,
          `${r.how} ${r.status}: ${r.text.slice(0, 300)}`);
  }
  const page = fs.readFileSync(path.join(__dirname, '..', 'Makefile'), 'utf8').slice(0, 40);
  for (const p of ['/../Makefile', '/%2e%2e/Makefile', '/..%2fMakefile', '/web/../Makefile', '//etc/passwd',
                   '/.%2e/.%2e/etc/passwd', '/index.html/..', '/.hidden']) {
    const r = await raw(get(p));
    check(r.status === 404 && !r.text.includes(page) && !r.text.includes('root:'), `path traversal ${p}: 404`,
          r.text.slice(0, 200));
  }
  await stillServes('the bad bodies and paths');

  // libmicrohttpd's limits: headers over its memory limit, headers that never end
  const long = await raw(Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nX-Long: ${'a'.repeat(200000)}\r\n\r\n`));
  check([413, 414, 431].includes(long.status) || (long.status === 0 && long.how !== 'timeout'),
        `a 200 kB header: ${long.status || long.how}, then closed`, long.text.slice(0, 200));
  const t0 = Date.now();
  const endless = await raw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n'), { waitMs: 20000 });
  check(endless.how !== 'timeout' && Date.now() - t0 < 15000,
        `a header without an end: closed by the server after ${((Date.now() - t0) / 1000).toFixed(1)} s (--timeout)`,
        `${endless.how} ${endless.text.slice(0, 200)}`);
  // a request split across many packets is read whole
  const split = await raw(post(valid), { pieces: 60, delayMs: 5 });
  const want = expected(LOAD[0]);
  let content = null;
  try { content = JSON.parse(split.text.slice(split.text.indexOf('\r\n\r\n') + 4)).choices[0].message.content; } catch {}
  check(split.status === 200 && content === want.text, 'a request split across 60 packets: 200, the right answer',
        split.text.slice(0, 300));
  await stillServes('the header limits');

  // a client vanishing mid-stream: the generation stops (the server says so in its log)
  const logBefore = fs.readFileSync(serverLog, 'utf8').length;
  const body = JSON.stringify({ messages: [{ role: 'user', content: 'Tell me a very long story.' }], stream: true,
                                 max_tokens: 1000, temperature: 1.5, seed: 5 });
  await new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(post(body)));
    let got = 0;
    socket.on('data', (d) => { got += d.length; if (got > 600) { socket.destroy(); resolve(); } });
    socket.on('error', resolve);
    socket.on('close', resolve);
    setTimeout(() => { socket.destroy(); resolve(); }, 20000);
  });
  let line = null;
  for (let i = 0; i < 100 && !line; i++) {
    await new Promise((r) => setTimeout(r, 100));
    line = /\[chatcmpl-\d+: (\d+) prompt \+ (\d+) answer tokens, cancelled: the client left\]/
      .exec(fs.readFileSync(serverLog, 'utf8').slice(logBefore));
  }
  check(line && Number(line[2]) < 1000, `a client vanishing mid-stream: its generation stopped after ` +
        `${line ? line[2] : '?'} of 1000 tokens`, fs.readFileSync(serverLog, 'utf8').slice(logBefore, logBefore + 500));
  // and one that leaves while its whole (not streamed) answer is queued
  await raw(post(JSON.stringify({ ...request(CASES[0]), max_tokens: 1000, temperature: 1.5 })), { waitMs: 50 });
  await stillServes('clients that vanished');
}

async function load() {
  // SERVE_LOAD="sequential clients rounds": 200 8 10 unless the caller says otherwise
  const [sequentialCount, clientCount, rounds] = (process.env.SERVE_LOAD || '200 8 10').split(' ').map(Number);
  const wants = LOAD.map(expected);
  for (const c of LOAD) await askWhole(c);  // warm: the allocations a request makes are in place
  const before = rssKiB();
  let failures = 0, wrong = 0, firstError = null;
  const t0 = Date.now();
  for (let i = 0; i < sequentialCount; i++) {
    try {
      const got = await askWhole(LOAD[i % 3]);
      if (!same(got, wants[i % 3])) wrong++;
    } catch (e) { failures++; firstError = firstError || String(e); }
  }
  const sequential = (Date.now() - t0) / 1000;
  check(failures === 0 && wrong === 0, `${sequentialCount} sequential requests in ${sequential.toFixed(1)} s: ${failures} failed, ` +
        `${wrong} wrong`, firstError);
  const t1 = Date.now();
  let max = 0;
  const clients = Array.from({ length: clientCount }, async (_, k) => {
    for (let i = 0; i < rounds; i++) {
      const c = (k + i) % 3, start = Date.now();
      try {
        const got = (k + i) % 2 ? await askStreamed(LOAD[c]) : await askWhole(LOAD[c]);
        delete got.chunks;
        if (!same(got, wants[c])) wrong++;
      } catch (e) { failures++; firstError = firstError || String(e); }
      max = Math.max(max, Date.now() - start);
    }
  });
  await Promise.all(clients);
  check(failures === 0 && wrong === 0, `${clientCount} concurrent clients x ${rounds} requests (streamed and not) ` +
        `in ${((Date.now() - t1) / 1000).toFixed(1)} s, slowest ${max} ms: ${failures} failed, ${wrong} wrong ` +
        `(no answer mixes two requests)`, firstError);
  const after = rssKiB();
  const limit = Number(process.env.SERVE_RSS_GROWTH_KIB || 4096);
  const total = sequentialCount + clientCount * rounds;
  check(after - before <= limit, `server RSS ${(before / 1024).toFixed(1)} MiB before the ${total} requests, ` +
        `${(after / 1024).toFixed(1)} MiB after (growth ${after - before} KiB, at most ${limit})`);
}

(async () => {
  for (const [name, part] of [['openai client', openaiClient], ['bad requests', badRequests], ['load', load]]) {
    try { await part(); } catch (e) { bad(`${name}: ${e.stack || e}`); }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
