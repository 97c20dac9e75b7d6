// Drives code-server in headless Debian Chromium (playwright-core) as a user would: waits for the
// hushcode status item to say ready, toggles completions off and on from the status bar, opens a file
// from the explorer, types, accepts the ghost text with Tab, then runs a "hushcode:" code action from
// the Ctrl+. menu. Checks the results on disk (Ctrl+S) and saves screenshots. Run by e2e.sh.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const URL = env('CS_URL');
const WS = env('WORKSPACE');
const OUT = env('ARTIFACTS');
const PROFILE = env('CHROME_PROFILE');
const STUB_LOG = env('STUB_LOG', '');
const MISSING_URL = env('MISSING_URL', '');
const PATH_URL = env('PATH_URL', '');
const CRASH_URL = env('CRASH_URL', '');
const TYPE_TEXT = env('TYPE_TEXT', 'def add');
const EXPECT = env('EXPECT', '');
const ACTION_PREFIX = env('ACTION_PREFIX', 'hushcode:');
const READY_TIMEOUT = 1000 * Number(env('READY_TIMEOUT', '300'));
const GHOST_TIMEOUT = 1000 * Number(env('GHOST_TIMEOUT', '60'));
const ACTION_TIMEOUT = 1000 * Number(env('ACTION_TIMEOUT', '180'));

const t0 = Date.now();
const log = (...a) => console.log(`[e2e.js ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const nbsp = (s) => (s || '').replace(/\u00a0/g, ' ');
const squash = (s) => nbsp(s).replace(/\s+/g, '');
let shotNo = 0;
let page;
async function shot(name) {
  shotNo += 1;
  const file = path.join(OUT, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log('screenshot', path.basename(file));
}
class Failure extends Error {}
function check(ok, what) {
  if (!ok) throw new Failure(what);
  log('ok:', what);
}

function pickFile() {
  const wanted = env('OPEN_FILE', '');
  if (wanted) return wanted;
  const found = [];
  const walk = (dir, rel) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith('.') || e.name === 'node_modules' || e.name === '__pycache__') continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(dir, e.name), r);
      else if (e.name.endsWith('.py') && /^\s*(async\s+)?def\s/m.test(fs.readFileSync(path.join(dir, e.name), 'utf8'))) found.push(r);
    }
  };
  walk(WS, '');
  found.sort((a, b) => a.split('/').length - b.split('/').length);
  if (!found.length) throw new Failure(`no Python file with a function in ${WS}`);
  return found[0];
}

function stubEvents(kind) {
  if (!STUB_LOG || !fs.existsSync(STUB_LOG)) return [];
  return fs.readFileSync(STUB_LOG, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => !kind || e.event === kind);
}

async function waitFor(what, fn, timeout, interval = 250) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Failure(`timed out after ${timeout / 1000}s waiting for ${what}`);
    await page.waitForTimeout(interval);
  }
}

// The item's id is `<extension id>.<item id>`; status bar messages carry "hushcode: ..." labels too.
const STATUS = '[id="hushcode.hushcode.hushcode.status"]';
async function hushcodeStatus() {
  const el = await page.$(STATUS);
  return el ? (await el.getAttribute('aria-label')).replace(/^hushcode: /, '') : null;
}
async function waitStatus(want, timeout) {
  let last = null;
  try {
    return await waitFor(`status "hushcode: ${want}"`, async () => {
      last = await hushcodeStatus();
      if (last === 'failed' && want !== 'failed') {
        await page.hover(STATUS).catch(() => {});
        const tip = await page.waitForSelector('.monaco-hover', { timeout: 3000 })
          .then((h) => h.textContent()).catch(() => '');
        throw new Failure(`hushcode status is "failed" ${tip}`);
      }
      return last === want;
    }, timeout, 200);
  } catch (e) {
    if (e instanceof Failure && last !== 'failed') throw new Failure(`${e.message} (last status: ${last})`);
    throw e;
  }
}

async function saveAndRead(rel) {
  await page.keyboard.press('Control+S');
  await page.waitForTimeout(400);
  return fs.readFileSync(path.join(WS, rel), 'utf8');
}

async function openFromExplorer(rel) {
  const parts = rel.split('/');
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i];
    const row = page.locator('.explorer-folders-view .monaco-list-row').filter({
      has: page.locator('.label-name', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
    }).first();
    await row.waitFor({ timeout: 30000 });
    if (i < parts.length - 1) {
      if ((await row.getAttribute('aria-expanded')) !== 'true') await row.click();
    } else {
      await row.dblclick();
    }
  }
  await page.waitForSelector(`.tabs-container .tab.active[aria-label^="${parts[parts.length - 1]}"]`, { timeout: 30000 });
  await page.waitForSelector('.editor-instance .monaco-editor .view-lines', { timeout: 30000 });
}

async function goToLine(n) {
  await page.keyboard.press('Control+G');
  await page.waitForSelector('.quick-input-widget input', { state: 'visible', timeout: 10000 });
  await page.keyboard.type(String(n));
  await page.keyboard.press('Enter');
  await page.waitForSelector('.quick-input-widget', { state: 'hidden', timeout: 10000 }).catch(() => {});
}

(async () => {
  fs.rmSync(PROFILE, { recursive: true, force: true });
  const ctx = await chromium.launchPersistentContext(PROFILE, {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  page = ctx.pages()[0] || (await ctx.newPage());
  page.on('pageerror', (e) => log('pageerror:', e.message));
  let code = 0;
  try {
    await page.goto(URL);
    await page.waitForSelector('.monaco-workbench', { timeout: 90000 });
    await page.waitForSelector('.explorer-folders-view .monaco-list-row', { timeout: 90000 });
    log('workbench ready');
    await shot('workbench');

    // 1. The server starts and the model becomes ready (status bar item).
    await waitFor('the hushcode status bar item', hushcodeStatus, 60000);
    log('status:', await hushcodeStatus());
    await waitStatus('ready', READY_TIMEOUT);
    log('model ready');
    await shot('ready');

    // 2. Click the status item: completions off, then on again (hushcode.toggleCompletions + hushcode.status).
    await page.click(STATUS);
    await waitStatus('off', 15000);
    await shot('toggled-off');
    await page.click(STATUS);
    await waitStatus('ready', 15000);
    check(true, 'status bar click toggles completions off and on');

    // 3. Open a file from the explorer, type on a new last line, wait for ghost text.
    const rel = pickFile();
    const file = path.join(WS, rel);
    const original = fs.readFileSync(file, 'utf8');
    log('opening', rel);
    await openFromExplorer(rel);
    await page.waitForTimeout(500);
    await page.click('.editor-instance .monaco-editor .view-lines');
    await page.keyboard.press('Control+End');
    if (!original.endsWith('\n')) await page.keyboard.press('Enter');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Enter');
    await shot('editor');
    await page.keyboard.type(TYPE_TEXT, { delay: 60 });
    const tTyped = Date.now();
    const GHOST = '.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text';
    await page.waitForSelector(GHOST, { timeout: GHOST_TIMEOUT / 2 }).catch(async () => {
      log('no ghost text yet; asking again with Alt+\\ (Trigger Inline Suggestion)');
      await page.keyboard.press('Alt+Backslash');
      await page.waitForSelector(GHOST, { timeout: GHOST_TIMEOUT / 2 });
    }).catch(() => {
      throw new Failure(`no ghost text within ${GHOST_TIMEOUT / 1000}s of typing ${JSON.stringify(TYPE_TEXT)}`);
    });
    log(`ghost text shown ${Date.now() - tTyped} ms after the last keystroke`);
    // The ghost text's first line is decorations on the cursor line; further lines are a view zone.
    const readGhost = async () => nbsp(await page.evaluate(() => {
      const ed = document.querySelector('.editor-instance .monaco-editor');
      const inline = [...ed.querySelectorAll('.view-lines .ghost-text-decoration')].map((e) => e.textContent).join('');
      const more = [...ed.querySelectorAll('.view-zones .suggest-preview-text .view-line')].map((l) => l.textContent);
      return [inline, ...more].join('\n');
    }));
    // A suggestion for an earlier keystroke may still be replaced: wait until it holds for 1 s.
    let ghost = await readGhost();
    for (let since = Date.now(), end = Date.now() + 10000; Date.now() - since < 1000 && Date.now() < end;) {
      await page.waitForTimeout(200);
      const now = await readGhost();
      if (now !== ghost) { ghost = now; since = Date.now(); }
    }
    log('ghost text (stable for 1 s):', JSON.stringify(ghost));
    await shot('ghost-text');
    check(ghost.trim().length > 0, 'ghost text is shown');
    if (EXPECT) check(new RegExp(EXPECT).test(ghost), `ghost text matches /${EXPECT}/`);

    // 4. Tab accepts it into the buffer.
    await page.keyboard.press('Tab');
    await page.waitForTimeout(300);
    await shot('accepted');
    const afterTab = await saveAndRead(rel);
    check(afterTab.startsWith(original.trimEnd()), 'the original text is untouched');
    const added = afterTab.slice(original.trimEnd().length);
    log('added by typing + Tab:', JSON.stringify(added));
    check(squash(added) === squash(TYPE_TEXT + ghost), 'the buffer has the typed text followed by the ghost text');

    // 5. Code action: cursor on the first function, Ctrl+., pick the "hushcode:" action.
    const lines = afterTab.split('\n');
    const wantFn = env('FUNCTION', '');
    const defLine = lines.findIndex((l) => (wantFn ? new RegExp(`^\\s*(async\\s+)?def\\s+${wantFn}\\b`) : /^\s*(async\s+)?def\s+\w+/).test(l));
    if (defLine < 0) throw new Failure(`no function ${wantFn || ''} in ${rel}`);
    const fn = /def\s+(\w+)/.exec(lines[defLine])[1];
    await goToLine(defLine + 1);
    await page.keyboard.press('End');
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('Control+.');
    const menu = '.action-widget';
    const opened = await page.waitForSelector(`${menu} .monaco-list-row, .monaco-editor-overlaymessage`, { timeout: 30000 })
      .catch(() => { throw new Failure('the Ctrl+. menu did not open'); });
    if (!(await opened.evaluate((e) => e.matches('.monaco-list-row')))) {
      await shot('no-code-actions');
      throw new Failure(`Ctrl+. on line ${defLine + 1} (def ${fn}): ${nbsp(await opened.textContent()).trim()}`);
    }
    // Rows are labelled with the action titles; pick with the keyboard (the menu blocks the pointer
    // until the mouse moves, as it does for a user who opened it with Ctrl+.).
    const labels = async () => (await page.$$eval(`${menu} .monaco-list-row.action`, (els) =>
      els.map((e) => [e.getAttribute('aria-label') || e.textContent || '', e.classList.contains('focused')])))
      .map(([t, f]) => [nbsp(t).trim(), f]);
    await waitFor(`a code action starting with "${ACTION_PREFIX}"`, async () =>
      (await labels()).some(([t]) => t.startsWith(ACTION_PREFIX)), 30000).catch(async (e) => {
      await shot('quickfix-menu');
      log('menu rows:', JSON.stringify(await labels()));
      throw e;
    });
    const titles = (await labels()).map(([t]) => t);
    log('code actions:', JSON.stringify(titles));
    await shot('quickfix-menu');
    const title = titles.find((t) => t.startsWith(ACTION_PREFIX));
    for (let i = 0; i <= titles.length; i++) {
      const focused = (await labels()).find(([, f]) => f);
      if (focused && focused[0] === title) break;
      await page.keyboard.press('ArrowDown');
    }
    check(((await labels()).find(([, f]) => f) || [])[0] === title, `"${title}" is selected in the menu`);
    await page.keyboard.press('Enter');
    const tPicked = Date.now();
    const afterAction = await waitFor('the code action edit', async () => {
      const now = await saveAndRead(rel);
      return now !== afterTab ? now : null;
    }, ACTION_TIMEOUT, 1000);
    log(`"${title}" applied after ${Date.now() - tPicked} ms`);
    await shot('action-applied');
    const before = afterTab.split('\n');
    const after = afterAction.split('\n');
    let head = 0;
    while (head < before.length && before[head] === after[head]) head++;
    let tail = 0;
    while (tail < before.length - head && before[before.length - 1 - tail] === after[after.length - 1 - tail]) tail++;
    const gone = before.length - tail - head;
    log(gone > 0 ? `edit: lines ${head + 1}-${before.length - tail} replaced by` : `edit: inserted before line ${head + 1}:`,
      JSON.stringify(after.slice(head, after.length - tail)));
    check(new RegExp(`def\\s+${fn}\\b`).test(afterAction), `function ${fn} still there after the action`);
    check(afterAction !== afterTab, `"${title}" changed the file`);
    if (STUB_LOG) check(afterAction.includes(`"""Stub docstring for ${fn}."""`), 'the stub docstring is in the file');

    // 6. Settings plumbing (the stub records what it received).
    if (STUB_LOG) {
      const init = stubEvents('initialize')[0];
      const opts = init && init.initializationOptions;
      check(opts && opts.model && opts.model.name === 'qwen2.5-coder-0.5b-instruct' && opts.completion &&
        opts.completion.debounceMaxMs === 250 && Array.isArray(opts.disabledLanguages) && opts.logLevel === 'debug' &&
        !('server' in opts), `initializationOptions has the nested camelCase settings: ${JSON.stringify(opts)}`);
      // Change a setting in the Settings editor, as a user would.
      await page.keyboard.press('Control+,');
      await page.waitForSelector('.settings-editor .settings-header .monaco-editor', { timeout: 20000 });
      await page.waitForTimeout(500);
      await page.keyboard.type('hushcode.completion.debounceMaxMs', { delay: 10 });
      const input = page.locator('.settings-editor .setting-item-number')
        .filter({ has: page.locator('.setting-item-label', { hasText: /^Debounce Max Ms$/ }) }).locator('input');
      await input.waitFor({ timeout: 20000 });
      await input.fill('321');
      await input.press('Tab');
      await shot('settings-changed');
      const pulled = await waitFor('workspace/configuration after the settings change', async () =>
        stubEvents('configuration').find((e) => e.why === 'didChangeConfiguration' && e.value &&
          e.value.completion && e.value.completion.debounceMaxMs === 321), 20000);
      check(!('server' in pulled.value), 'a settings change sends didChangeConfiguration and the pull returns the new value');
      check(stubEvents('toggle').length === 2, 'two toggles reached the server');
    }
    // 8. No hushcode.server.command (workspace value []): the server is found as `hushcode` on PATH.
    if (PATH_URL) {
      await page.goto(PATH_URL);
      await page.waitForSelector('.explorer-folders-view .monaco-list-row', { timeout: 90000 });
      await waitStatus('ready', READY_TIMEOUT);
      await shot('found-on-path');
      check(true, 'with hushcode.server.command empty, `hushcode serve` from PATH starts and gets ready');

      // "hushcode: Verify Model" from the command palette runs `hushcode model verify <name>` from there.
      await page.keyboard.press('F1');
      await page.waitForSelector('.quick-input-widget input', { state: 'visible', timeout: 10000 });
      await page.keyboard.type('hushcode: Verify Model', { delay: 10 });
      await page.waitForSelector('.quick-input-widget .monaco-list-row[aria-label*="Verify Model"]', { timeout: 10000 });
      await page.keyboard.press('Enter');
      const done = page.locator('.notifications-toasts .notification-toast', { hasText: /hushcode: (the model is intact|.*failed)/ });
      await done.waitFor({ timeout: 180000 });
      const text = nbsp(await done.locator('.notification-list-item-message').textContent());
      log('verify model:', JSON.stringify(text));
      await shot('verify-model');
      check(text.includes('the model is intact'), '"hushcode: Verify Model" runs `hushcode model verify` and reports success');
    }

    // 9. A workspace whose hushcode.server.command does not exist: the error says how to fix it.
    if (MISSING_URL) {
      await page.goto(MISSING_URL);
      await page.waitForSelector('.explorer-folders-view .monaco-list-row', { timeout: 90000 });
      await waitStatus('failed', 60000);
      const toast = page.locator('.notifications-toasts .notification-toast', { hasText: 'pip install hushcode' });
      await toast.waitFor({ timeout: 30000 });
      const text = nbsp(await toast.locator('.notification-list-item-message').textContent());
      log('error message:', JSON.stringify(text));
      await shot('server-missing');
      check(text.includes('hushcode.server.command') && text.includes('/nonexistent/hushcode'),
        'a missing server gives an error that names the setting and the fix');
      await toast.locator('.monaco-button', { hasText: 'Open Settings' }).click();
      await page.waitForSelector('.settings-editor', { timeout: 20000 });
      await waitFor('the hushcode.server.command setting', () =>
        page.locator('.settings-editor .setting-item-label', { hasText: /^Command$/ }).count(), 20000);
      await shot('open-settings');
      check(true, '"Open Settings" shows hushcode.server.command');
    }
    // 10. A server that exits at start-up: the error carries its exit status and last stderr line.
    if (CRASH_URL) {
      await page.goto(CRASH_URL);
      await page.waitForSelector('.explorer-folders-view .monaco-list-row', { timeout: 90000 });
      await waitStatus('failed', 60000);
      const toast = page.locator('.notifications-toasts .notification-toast', { hasText: 'the server did not start' });
      await toast.waitFor({ timeout: 30000 });
      const text = nbsp(await toast.locator('.notification-list-item-message').textContent());
      log('error message:', JSON.stringify(text));
      await shot('server-crashed');
      check(text.includes('exit code 3') && text.includes('no model here'),
        'a server that dies at start-up is reported with its exit code and stderr');
    }
    log('all checks passed');
  } catch (e) {
    code = e instanceof Failure ? 1 : 2;
    console.log(`e2e.js: ${e instanceof Failure ? 'check failed' : 'error'}: ${e && e.stack ? e.stack : e}`);
    try {
      await shot('failure');
      fs.writeFileSync(path.join(OUT, 'failure-dom.html'), await page.$eval('.monaco-workbench', (e) => e.outerHTML));
    } catch { /* page gone */ }
  } finally {
    log('total', Date.now() - t0, 'ms');
    await ctx.close().catch(() => {});
  }
  process.exit(code);
})().catch((e) => { console.error(e); process.exit(2); });
