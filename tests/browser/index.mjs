// Drives Debian's headless Chromium through the bridge's GET / page, as a person would: reads the
// state label of an export, fills its filter form, downloads the CSV, then follows its XLSX link.
// Run by tests/api/index.rs:  node tests/browser/index.mjs http://127.0.0.1:PORT
// Env: CHROMIUM (default /usr/bin/chromium), EXPORT (default work_orders), STATUS_LABEL (default
// Closed), SCREENSHOT (a PNG path, optional). Prints one JSON line with what it saw; exits 1 when
// a check fails.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.argv[2];
const exportName = process.env.EXPORT || 'work_orders';
const statusLabel = process.env.STATUS_LABEL || 'Closed';
if (!base) {
  console.error('usage: node index.mjs BASE_URL');
  process.exit(2);
}
// Never hang a test run: the whole walk takes a few seconds.
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
  // Playwright adds --headless itself (headless: true); the rest keep Chromium off the closed
  // network, where its background connections would hang.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    acceptDownloads: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20_000);
  await page.goto(`${base}/`);
  const section = page.locator(`section[data-export="${exportName}"]`);
  const label = section.locator('.state');
  const state = {
    text: (await label.textContent()).trim(),
    attribute: await label.getAttribute('data-state'),
    section: await section.getAttribute('data-state'),
    records: await section.locator('.records').getAttribute('data-records'),
    refreshed: await section.locator('time.refreshed').getAttribute('datetime'),
  };
  check(state.text === 'fresh' && state.attribute === 'fresh' && state.section === 'fresh',
    `state of ${exportName}: ${JSON.stringify(state)}`);

  // The filters are folded away; open them as a person would.
  await section.locator('summary').click();
  const form = section.locator('form');
  // XLSX takes no byte order mark: choosing it points the form there and turns bom off.
  await form.locator('select.format').selectOption('xlsx');
  check(await form.locator('input[name="bom"]').isDisabled(), 'bom stays on for XLSX');
  const xlsxAction = await form.getAttribute('action');
  check(xlsxAction === `/exports/${exportName}.xlsx`, `XLSX form action: ${xlsxAction}`);
  await form.locator('select.format').selectOption('csv');
  check(await form.locator('input[name="bom"]').isEnabled(), 'bom is off for CSV');
  await form.locator('select[name="status"]').selectOption(statusLabel);
  await form.locator('input[name="fields"]').fill('id,title');
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  const [csvDownload] = await Promise.all([
    page.waitForEvent('download'),
    form.locator('button').click(),
  ]);
  const csvUrl = csvDownload.url();
  check((await csvDownload.failure()) === null, `CSV download failed: ${await csvDownload.failure()}`);
  const csv = readFileSync(await csvDownload.path(), 'utf8');
  const lines = csv.split('\r\n').filter((l) => l !== '');
  check(new URL(csvUrl).pathname === `/exports/${exportName}.csv`, `form went to ${csvUrl}`);
  check(lines[0] === 'id,title', `CSV header: ${JSON.stringify(lines[0])}`);
  check(lines.length > 1, 'the filtered CSV has rows');

  // Back on the page (a download does not navigate), follow the XLSX link.
  const [xlsxDownload] = await Promise.all([
    page.waitForEvent('download'),
    section.locator('a', { hasText: 'XLSX' }).click(),
  ]);
  const xlsx = readFileSync(await xlsxDownload.path());
  check(xlsx.length > 4 && xlsx.subarray(0, 4).equals(Buffer.from([0x50, 0x4b, 3, 4])),
    `XLSX starts with ${xlsx.subarray(0, 4).toString('hex')}, not a zip`);
  console.log(JSON.stringify({
    state, csv_url: csvUrl, csv, csv_file: csvDownload.suggestedFilename(),
    xlsx_url: xlsxDownload.url(), xlsx_file: xlsxDownload.suggestedFilename(), xlsx_bytes: xlsx.length,
  }));
} catch (e) {
  console.error(`browser test: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
