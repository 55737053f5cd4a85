// Opens the bridge's GET / page with an access key, as a person given the key would: lists the
// exports the page offers, fills one export's form and presses "Copy signed link".
// Run by tests/api/access.rs:  node tests/browser/access.mjs http://127.0.0.1:PORT
// Env: CHROMIUM (default /usr/bin/chromium), KEY (the access key), EXPORT (the export to share),
// FIELDS (typed into its fields input). Prints one JSON line with what it saw; exits 1 when a
// check fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.argv[2];
const { KEY: key, EXPORT: exportName, FIELDS: fields } = process.env;
if (!base || !key || !exportName) {
  console.error('usage: KEY=dbk_... EXPORT=name node access.mjs BASE_URL');
  process.exit(2);
}
setTimeout(() => {
  console.error('browser test: timed out after 90 s');
  process.exit(3);
}, 90_000).unref();

function check(ok, message) {
  if (!ok) throw new Error(message);
}

const profile = mkdtempSync(join(tmpdir(), 'bridge-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20_000);
  const answer = await page.goto(`${base}/?token=${encodeURIComponent(key)}`);
  check(answer.status() === 200, `GET / answered ${answer.status()}`);
  const exports = await page.locator('section[data-export]').evaluateAll(
    (sections) => sections.map((s) => s.dataset.export));
  const statusLink = await page.locator('footer a[href^="/status"]').count();
  const section = page.locator(`section[data-export="${exportName}"]`);
  await section.locator('summary').click();
  const form = section.locator('form');
  if (fields) await form.locator('input[name="fields"]').fill(fields);
  await form.locator('button.share').click();
  const out = form.locator('input.signed-link');
  await out.waitFor({ state: 'visible' });
  const link = await out.inputValue();
  check(link.startsWith(`${base}/exports/${exportName}.csv?`), `the link: ${link}`);
  console.log(JSON.stringify({ exports, status_link: statusLink, link }));
} catch (e) {
  console.error(`browser test: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
