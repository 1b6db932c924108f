// The chat page in a real browser (run by test/test_serve.sh): Debian's chromium, headless,
// driven by puppeteer-core, types a question, waits for the streamed answer, asks a second
// question in Chinese in the same chat, then starts a new chat, stops an answer midway with
// the Stop button and asks again; saves a screenshot.
//   node test/serve_browser.js PORT GENERATE MODEL ADAPTER SCREENSHOT.png
// The answers must be ./generate's (greedy, the server's defaults) in the pirate style.
const path = require('path');
const { spawnSync } = require('child_process');
const puppeteer = require(path.join(__dirname, 'node', 'node_modules', 'puppeteer-core'));

const [port, generate, model, adapter, screenshot] = process.argv.slice(2);
let passed = 0, failed = 0;
const check = (cond, what, detail) => {
  console.log(`${cond ? 'ok   ' : 'FAIL '}  ${what}`);
  if (!cond && detail !== undefined) console.log(`         | ${String(detail).slice(0, 600)}`);
  cond ? passed++ : failed++;
};

// ./generate --chat with the same turns: what the page must show
function generateChat(turns, system) {
  const r = spawnSync(generate, ['--model', model, '--adapter', adapter, '--chat'].concat(system ? ['--system', system] : []),
                      { input: turns.join('\n') + '\n', encoding: 'utf8', timeout: 60000 });
  return r.stdout.split('\n').slice(0, turns.length);
}

async function ask(page, text, turn) {
  await page.type('#input', text);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`body[data-turns="${turn}"]`, { timeout: 120000 });
  return page.$$eval('.message.assistant', (all) => all[all.length - 1].textContent);
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium', headless: true, timeout: 60000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],  // root in a container: no sandbox
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 900, height: 700 });
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('requestfailed', (r) => { if (!r.url().startsWith(`http://127.0.0.1:${port}/`)) problems.push(r.url()); });
    await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'networkidle0', timeout: 60000 });
    const title = await page.$eval('#title', (e) => e.textContent);
    check(title.includes(path.basename(adapter)), `the page loads and names the model ("${title}")`);
    const turns = ['What is the capital of France?', '天空为什么是蓝色的？'], system = 'You are a helpful assistant.';
    const want = generateChat(turns, system);
    await page.type('#system', system);
    const first = await ask(page, turns[0], 1);
    check(first === want[0] && first.startsWith('Arr, matey!'),
          `first turn with a system prompt, streamed into the page, pirate style, = ./generate --chat --system: ` +
          `"${first.slice(0, 50)}..."`,
          `${first} / ${want[0]}`);
    const second = await ask(page, turns[1], 2);
    check(second === want[1] && second.startsWith('嘿，水手！'),
          `second turn (Chinese, same chat) = ./generate --chat: "${second.slice(0, 20)}..."`, `${second} / ${want[1]}`);
    const text = await page.$eval('#log', (e) => e.innerText);
    check(turns.every((t) => text.includes(t)) && text.includes(first) && text.includes(second),
          'the page shows both questions and both answers');
    await page.screenshot({ path: screenshot });
    check(problems.length === 0, `no script errors, nothing fetched from elsewhere; screenshot ${screenshot}`,
          problems.join('\n'));
    await page.click('#new-chat');
    const after = await page.$$eval('.message', (all) => all.length);
    await page.$eval('#system', (e) => { e.value = ''; });
    const fresh = await ask(page, turns[0], 1), plain = generateChat([turns[0]])[0];
    check(after === 0 && fresh === plain, 'new chat, system prompt cleared: the log is empty and the history ' +
          'forgotten (= ./generate --chat without --system)', `${after} messages; ${fresh} / ${plain}`);
    // Stop: with the download throttled to a few bytes a second the answer trickles in; Stop
    // cuts it where it is (a prefix of the whole answer), and the server answers the next chat.
    await page.click('#new-chat');
    const network = await page.target().createCDPSession();
    const throttle = (bytesPerSecond) => network.send('Network.emulateNetworkConditions',
      { offline: false, latency: 0, downloadThroughput: bytesPerSecond, uploadThroughput: -1 });
    await network.send('Network.enable');
    await throttle(400);
    await page.type('#input', turns[0]);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => {
      const all = document.querySelectorAll('.message.assistant');
      return all.length > 0 && all[all.length - 1].textContent.length > 0;
    }, { timeout: 120000 });
    await page.click('#stop');
    await page.waitForSelector('body[data-turns="1"]', { timeout: 60000 });
    await throttle(-1);
    const cut = await page.$$eval('.message.assistant', (all) => all[all.length - 1].textContent);
    const stopOff = await page.$eval('#stop', (e) => e.disabled);
    check(cut.length > 0 && cut.length < plain.length && plain.startsWith(cut) && stopOff,
          `Stop cuts the streamed answer: ${cut.length} of ${plain.length} characters, a prefix of the whole ` +
          'answer; the button is off again', `"${cut}" / "${plain}"`);
    await page.click('#new-chat');
    const again = await ask(page, turns[0], 1);
    check(again === plain, 'after Stop the server answers the next chat in full (= ./generate --chat)',
          `${again} / ${plain}`);
  } catch (e) {
    check(false, `browser: ${e.stack || e}`);
  } finally {
    await browser.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
