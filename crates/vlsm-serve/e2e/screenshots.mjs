// The README's pictures of the vlsm serve page: docs/serve.png (the built-in model's mask on an
// example colonoscopy image) and docs/serve_corrected.png (the same mask after the eraser took
// off the polyp's stalk, which the model included and the dataset's mask leaves out).
//
//   (cd crates/vlsm-serve/e2e && npm ci)          # once: playwright-core
//   cd crates/vlsm-serve/e2e && VLSM_BIN=../../../target/release/vlsm node screenshots.mjs
//
// Environment: VLSM_BIN (the vlsm binary, default ../../../target/release/vlsm; it serves the
// built-in model), CHROMIUM (default /usr/bin/chromium), OUT_DIR (default the repo's docs/),
// WAIT_S (seconds to wait for a segmentation, default 120: a debug build on a loaded machine is
// slow), TRUTH (optional: the dataset's mask of the example, to print the Dice before and after
// the correction). The server gets a fresh temporary --dataset folder, so the correction is also
// saved.
//
// The eraser strokes are in the image's pixels (593x530) and follow the dataset's mask's lower
// edge (/work/shared/data/kvasir_polyp/masks/cju2xjz2ju8pe0993ysv9wg17.png): with the built-in
// model of this commit they take the example's Dice from 0.928 to 0.969. If the model changes,
// look at both pictures again.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');
const BIN = process.env.VLSM_BIN || path.join(ROOT, 'target/release/vlsm');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT_DIR = process.env.OUT_DIR || path.join(ROOT, 'docs');
const WAIT_MS = 1000 * Number(process.env.WAIT_S || 120);
const TRUTH = process.env.TRUTH;
const IMAGE = path.join(ROOT, 'examples/kvasir_cju2xjz2ju8pe0993ysv9wg17.jpg');
// The example's p6 prompt from the dataset's anns (examples/README.md; the README's command).
const PROMPT = 'one medium orange round polyp, located in center of the image';
// Eraser strokes, [points in image pixels, brush size]: along the lower edge of the polyp's head,
// then across the stalk below it, then the two corners left over.
// The page's own files, served from this working tree (the binary embeds the same files at build
// time), so the pictures show the current page even when VLSM_BIN is a little older.
const ASSETS = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};
const ERASE = [
  [[[195, 462], [312, 508], [398, 468], [418, 440]], 32],
  [[[195, 515], [415, 515]], 40],
  [[[200, 490], [230, 490]], 24],
  [[[392, 494], [420, 494]], 24],
];

function startServer(dataset) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ['serve', '--addr', '127.0.0.1:0', '--dataset', dataset], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => { p.kill('SIGTERM'); reject(new Error('server did not start in 120 s: ' + out)); }, 120000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolve({ proc: p, url: m[1] }); }
    });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${BIN}: ${e.message}`)); });
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${out}`)); });
  });
}

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), 'vlsm-shots-'));
  const { proc, url } = await startServer(path.join(work, 'dataset'));
  console.log('server at', url);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 720 }, deviceScaleFactor: 1 });
    page.setDefaultTimeout(WAIT_MS);
    const problems = [];
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    const frame = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const count = async () => Number(await page.getAttribute('#layers li.active', 'data-count'));
    // Dice of the active layer's mask (after threshold and edits) with TRUTH's mask.
    const dice = () => page.evaluate(async (b64) => {
      const im = new Image();
      im.src = 'data:image/png;base64,' + b64;
      await im.decode();
      if (im.width !== S.w || im.height !== S.h) throw new Error('TRUTH is not the image\'s size');
      const c = document.createElement('canvas');
      c.width = im.width; c.height = im.height;
      c.getContext('2d').drawImage(im, 0, 0);
      const t = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const m = maskOf(S.layers[S.active]);
      let both = 0, nt = 0, nm = 0;
      for (let i = 0; i < m.length; i++) {
        const ti = t[4 * i] > 127;
        nt += ti; nm += m[i]; both += ti && m[i];
      }
      return (2 * both) / (nt + nm);
    }, readFileSync(TRUTH).toString('base64'));

    const origin = new URL(url).origin;
    await page.route((u) => u.origin === origin && u.pathname in ASSETS, (route) => {
      const [file, type] = ASSETS[new URL(route.request().url()).pathname];
      return route.fulfill({ status: 200, contentType: type, body: readFileSync(path.join(HERE, '../assets', file)) });
    });
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('model').textContent.startsWith('model:'));
    await page.setInputFiles('#file', IMAGE);
    await page.waitForFunction(() => document.getElementById('canvas').width > 1);
    await page.fill('#prompt', PROMPT);
    await page.press('#prompt', 'Enter');
    await page.waitForFunction(() => /cache, \d+ ms|failed/.test(document.getElementById('status').textContent));
    const st = await page.textContent('#status');
    if (!st.includes(' ms.')) throw new Error('segmentation: ' + st);
    await frame();
    const before = await count();
    const shot1 = path.join(OUT_DIR, 'serve.png');
    await page.screenshot({ path: shot1 });
    console.log(`${shot1}: ${before} px in the mask (${st})`);
    if (TRUTH) console.log('Dice with TRUTH before the correction:', (await dice()).toFixed(3));

    // The correction: the eraser along the head's lower edge and across the stalk.
    const { w, h } = await page.evaluate(() => ({ w: document.getElementById('canvas').width, h: document.getElementById('canvas').height }));
    const box = await page.locator('#canvas').boundingBox();
    const at = ([x, y]) => [box.x + (x / w) * box.width, box.y + (y / h) * box.height];
    await page.check('input[name=tool][value=eraser]');
    for (const [pts, size] of ERASE) {
      await page.fill('#size', String(size));
      await page.mouse.move(...at(pts[0]));
      await page.mouse.down();
      for (let i = 1; i < pts.length; i++) {
        // Several moves per segment, as a hand would make.
        for (let k = 1; k <= 8; k++) {
          const [x0, y0] = pts[i - 1], [x1, y1] = pts[i];
          await page.mouse.move(...at([x0 + ((x1 - x0) * k) / 8, y0 + ((y1 - y0) * k) / 8]));
        }
      }
      await page.mouse.up();
    }
    await frame();
    const after = await count();
    if (!(after > 0 && after < before)) throw new Error(`the eraser did not shrink the mask (${before} -> ${after} px)`);
    if (TRUTH) console.log('Dice with TRUTH after the correction:', (await dice()).toFixed(3));
    // Keep the correction as training data, as a user would.
    await page.evaluate(() => { document.getElementById('status').textContent = ''; });
    await page.click('#save');
    await page.waitForFunction(() => /^(Saved|Save failed)/.test(document.getElementById('status').textContent));
    const saved = await page.textContent('#status');
    if (!saved.startsWith('Saved')) throw new Error(saved);
    await frame();
    const shot2 = path.join(OUT_DIR, 'serve_corrected.png');
    await page.screenshot({ path: shot2 });
    console.log(`${shot2}: ${after} px after erasing ${before - after} (${saved})`);
    if (problems.length) throw new Error(problems.join('; '));
    for (const f of [shot1, shot2]) {
      // Lossless recompression where optipng is installed (apt-get install optipng): about 10% smaller.
      const o = spawnSync('optipng', ['-quiet', '-o2', f]);
      if (o.error) console.log('optipng not found: the PNGs are as Chromium wrote them');
      console.log(f, Math.round(statSync(f).size / 1024), 'KiB');
    }
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
    await new Promise((r) => { proc.on('exit', r); setTimeout(r, 5000); });
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error('screenshots failed:', e.message); process.exit(1); });
