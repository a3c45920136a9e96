// End-to-end test of the vlsm serve page in headless Debian Chromium (playwright-core).
// Starts the server on a free loopback port with a fresh dataset folder, then: open the page,
// upload an image, type a prompt, see the overlay, move the threshold slider, paint and erase a
// correction, download the mask, save to the dataset, and check the saved files.
//
// With VLSM_TRAIN_MODEL (a tiny TextUNet dir), a second server with --train: save several
// corrected images, press "Fine-tune on my corrections", see the version change, segment with
// the new model, roll back.
//
// Environment: VLSM_SERVE_BIN (server binary), VLSM_MODEL (model dir), E2E_IMAGE (image file),
// E2E_WORK (empty folder), optional E2E_VOLUME (a 12x10x6 NIfTI: the slice slider), CHROMIUM
// (default /usr/bin/chromium), SCREENSHOT (PNG path), VLSM_TRAIN_MODEL (TextUNet dir for the
// fine-tuning part).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`set ${k}`);
  return v;
};
const BIN = env('VLSM_SERVE_BIN');
const MODEL = env('VLSM_MODEL');
const IMAGE = env('E2E_IMAGE');
const WORK = env('E2E_WORK');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const SCREENSHOT = process.env.SCREENSHOT;
const VOLUME = process.env.E2E_VOLUME;
const DATASET = path.join(WORK, 'dataset');
const PROMPT = 'polyp';

function check(cond, msg) {
  if (!cond) throw new Error('check failed: ' + msg);
  console.log('ok -', msg);
}

const TRAIN_MODEL = process.env.VLSM_TRAIN_MODEL;

function startServer(args) {
  args = args || ['--model', MODEL, '--addr', '127.0.0.1:0', '--dataset', DATASET];
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start in 60 s: ' + out)), 60000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolve({ proc: p, url: m[1] }); }
    });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${out}`)); });
  });
}

async function main() {
  const { proc, url } = await startServer();
  console.log('server at', url);
  const browser = await chromium.launch({
    // Playwright gives each launch a fresh temporary profile (its own --user-data-dir).
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 }, acceptDownloads: true });
    const problems = [];
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    page.on('request', (r) => { if (!r.url().startsWith(url) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) problems.push('external request: ' + r.url()); });

    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('model').textContent.includes('clipseg'));
    check(true, 'page loaded and read /api/model');

    await page.setInputFiles('#file', IMAGE);
    await page.fill('#prompt', PROMPT);
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('#layers li');
    const { w, h } = await page.evaluate(() => ({ w: document.getElementById('canvas').width, h: document.getElementById('canvas').height }));
    check(w > 1 && h > 1, `image shown on the canvas (${w}x${h})`);
    check(await page.getAttribute('#layers li', 'data-prompt') === PROMPT, 'a mask layer for the prompt');

    const pixels = () => page.evaluate(() => {
      const c = document.getElementById('canvas');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
    });
    const count = async () => Number(await page.getAttribute('#layers li.active', 'data-count'));
    const frame = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

    // Threshold slider: 1 hides everything, 0 covers the image; the overlay tints the canvas.
    await page.fill('#threshold', '1'); await frame();
    check(await count() === 0, 'threshold 1: empty mask');
    const plain = await pixels();
    await page.fill('#threshold', '0'); await frame();
    check(await count() === w * h, 'threshold 0: the whole image');
    const tinted = await pixels();
    let changed = 0;
    for (let i = 0; i < plain.length; i += 4) if (plain[i] !== tinted[i] || plain[i + 1] !== tinted[i + 1]) changed++;
    check(changed > 0.9 * w * h, `overlay drawn on the canvas (${changed} of ${w * h} pixels tinted)`);
    check(await page.textContent('#thresholdOut') === '0.00', 'slider value shown');

    // Correction: from an empty mask, paint a horizontal stroke, then erase a vertical one.
    await page.fill('#threshold', '1'); await frame();
    const box = await page.locator('#canvas').boundingBox();
    const at = (fx, fy) => [box.x + fx * box.width, box.y + fy * box.height];
    await page.fill('#size', String(Math.max(3, Math.round(h / 8))));
    await page.check('input[name=tool][value=brush]');
    await page.mouse.move(...at(0.1, 0.5));
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(...at(0.1 + 0.08 * i, 0.5));
    await page.mouse.up(); await frame();
    const painted = await count();
    check(painted > 0, `brush painted ${painted} pixels`);
    await page.check('input[name=tool][value=eraser]');
    await page.mouse.move(...at(0.5, 0.05));
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(...at(0.5, 0.05 + 0.09 * i));
    await page.mouse.up(); await frame();
    const afterErase = await count();
    check(afterErase > 0 && afterErase < painted, `eraser removed ${painted - afterErase} pixels`);
    // The slider does not undo corrections.
    await page.fill('#threshold', '0.99'); await frame();
    check(await count() >= afterErase, 'corrections survive a threshold change');
    await page.fill('#threshold', '1'); await frame();

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    check(download.suggestedFilename().endsWith('_polyp_mask.png'), 'download offers ' + download.suggestedFilename());

    await page.click('#save');
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Saved') || document.getElementById('status').className === 'error');
    const st = await page.textContent('#status');
    check(st.startsWith('Saved'), 'save to dataset: ' + st);

    // The saved files.
    const anns = JSON.parse(readFileSync(path.join(DATASET, 'anns', 'train.json'), 'utf8'));
    check(anns.length === 1, 'one record in anns/train.json');
    const rec = anns[0];
    check(rec.prompts.p1 === PROMPT && rec.prompts.p0 === '', 'record prompts {p0: "", p1: prompt}');
    const maskFile = path.join(DATASET, 'masks', rec.mask_name);
    check(existsSync(path.join(DATASET, 'images', rec.img_name)) && existsSync(maskFile), 'image and mask files exist');
    const mask = await page.evaluate(async (b64) => {
      const im = new Image();
      im.src = 'data:image/png;base64,' + b64;
      await im.decode();
      const c = document.createElement('canvas');
      c.width = im.width; c.height = im.height;
      const g = c.getContext('2d');
      g.drawImage(im, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const v = (x, y) => d[4 * (y * c.width + x)];
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 127) n++;
      const H = c.height, W = c.width;
      return { w: W, h: H, n, stroke: v(Math.round(W * 0.25), Math.round(H * 0.5)), erased: v(Math.round(W * 0.5), Math.round(H * 0.5)), away: v(Math.round(W * 0.25), Math.round(H * 0.1)) };
    }, readFileSync(maskFile).toString('base64'));
    check(mask.w === w && mask.h === h, `saved mask is ${mask.w}x${mask.h}, the image's size`);
    check(mask.n === afterErase, `saved mask has the corrected ${mask.n} pixels`);
    check(mask.stroke === 255 && mask.erased === 0 && mask.away === 0, 'painted, erased and untouched pixels as drawn');
    const [x0, y0, x1, y1] = rec.bbox;
    check(x0 < x1 && y0 < y1 && x1 <= w && y1 <= h, 'bbox ' + JSON.stringify(rec.bbox));

    if (VOLUME) {
      // A volume: every slice segmented at once, a slider through them, the mask volume downloaded.
      await page.setInputFiles('#file', VOLUME);
      await page.fill('#prompt', PROMPT);
      await page.press('#prompt', 'Enter');
      await page.waitForFunction(() => !document.getElementById('sliceBox').hidden && document.querySelectorAll('#layers li').length === 1);
      const slices = Number(await page.getAttribute('#slice', 'max')) + 1;
      check(slices === 6, `slice slider over ${slices} slices`);
      const dims = await page.evaluate(() => [document.getElementById('canvas').width, document.getElementById('canvas').height]);
      check(dims[0] === 12 && dims[1] === 10, `slice shown at ${dims.join('x')}`);
      await page.fill('#threshold', '0.5'); await frame();
      const mid = await pixels();
      await page.fill('#slice', '0');
      await page.waitForFunction(() => document.getElementById('sliceOut').textContent === '0 / 5');
      await frame(); await frame();
      const first = await pixels();
      let diff = 0;
      for (let i = 0; i < mid.length; i++) if (mid[i] !== first[i]) diff++;
      check(diff > 0, `the slider shows another slice (${diff} values changed)`);
      const [vdl] = await Promise.all([page.waitForEvent('download'), page.click('#downloadVolume')]);
      check(vdl.suggestedFilename().endsWith('_polyp.mask.nii.gz'), 'mask volume download offers ' + vdl.suggestedFilename());
      const gz = readFileSync(await vdl.path());
      check(gz[0] === 0x1f && gz[1] === 0x8b, `the mask volume is gzip (${gz.length} bytes)`);
    }

    if (SCREENSHOT) {
      // A second prompt and a mid threshold make a more telling picture.
      await page.fill('#prompt', 'a small pink polyp');
      await page.press('#prompt', 'Enter');
      await page.waitForFunction(() => document.querySelectorAll('#layers li').length === 2);
      await page.click('#layers li:first-child .name');
      // A threshold at which the (random) first mask covers part of the image, not all of it.
      for (let t = 0.5; t < 0.9; t += 0.01) {
        await page.fill('#threshold', t.toFixed(2)); await frame();
        if (await count() < 0.35 * w * h) break;
      }
      await page.check('input[name=tool][value=brush]');
      await frame();
      await page.screenshot({ path: SCREENSHOT });
      console.log('screenshot', SCREENSHOT);
    }
    check(problems.length === 0, 'no page errors, console errors or external requests' + (problems.length ? ': ' + problems.join('; ') : ''));
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
    await new Promise((r) => { proc.on('exit', r); setTimeout(r, 5000); });
  }
  if (TRAIN_MODEL) await fineTune();
  console.log('E2E OK');
}

// Save three corrected images, fine-tune from the page, see the version change, segment with
// the new model, roll back.
async function fineTune() {
  const ds = path.join(WORK, 'train_dataset');
  const { proc, url } = await startServer(['--model', TRAIN_MODEL, '--addr', '127.0.0.1:0', '--dataset', ds,
    '--train', '--train-threads', '1']);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    const problems = [];
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('version').textContent.startsWith('base'));
    check(await page.isVisible('#train'), 'fine-tune button shown with --train');
    check(await page.isDisabled('#rollback'), 'nothing to roll back yet');
    const frame = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    for (let i = 0; i < 3; i++) {
      await page.setInputFiles('#file', IMAGE);
      await page.waitForFunction(() => document.getElementById('canvas').width > 1);
      await page.evaluate(() => { document.getElementById('status').textContent = ''; });
      await page.fill('#prompt', PROMPT);
      await page.press('#prompt', 'Enter');
      await page.waitForFunction(() => /cache, \d+ ms|failed/.test(document.getElementById('status').textContent));
      check(await page.isVisible('#layers li.active'), `image ${i + 1} segmented`);
      await page.fill('#threshold', '1'); await frame();
      const box = await page.locator('#canvas').boundingBox();
      const at = (fx, fy) => [box.x + fx * box.width, box.y + fy * box.height];
      await page.fill('#size', '40');
      await page.check('input[name=tool][value=brush]');
      await page.mouse.move(...at(0.3, 0.3 + 0.1 * i));
      await page.mouse.down();
      for (let k = 1; k <= 8; k++) await page.mouse.move(...at(0.3 + 0.05 * k, 0.3 + 0.1 * i));
      await page.mouse.up(); await frame();
      await page.check('input[name=tool][value=view]');
      await page.evaluate(() => { document.getElementById('status').textContent = ''; });
      await page.click('#save');
      await page.waitForFunction(() => /^(Saved|Save failed)/.test(document.getElementById('status').textContent));
      check((await page.textContent('#status')).startsWith('Saved'), `correction ${i + 1} saved`);
    }
    await page.fill('#epochs', '2');
    await page.click('#train');
    await page.waitForFunction(() => document.getElementById('version').textContent.startsWith('v001'), null, { timeout: 120000 });
    check(true, 'fine-tune done: the page shows v001');
    check(!(await page.isDisabled('#rollback')), 'rollback offered');
    const info = await page.textContent('#trainInfo');
    check(info.includes('v001 ready'), 'progress line: ' + info);
    const m = await page.evaluate(async () => (await fetch('/api/model')).json());
    check(m.version === 'v001' && m.versions.length === 1, 'server serves v001');
    // Segment with the new model: a new answer from the server.
    await page.evaluate(() => { document.getElementById('status').textContent = ''; });
    const before = await page.evaluate(() => document.querySelectorAll('#layers li').length);
    await page.fill('#prompt', 'a polyp after fine-tuning');
    await page.press('#prompt', 'Enter');
    await page.waitForFunction(() => /cache, \d+ ms|failed/.test(document.getElementById('status').textContent));
    const after = await page.evaluate(() => document.querySelectorAll('#layers li').length);
    const segStatus = await page.textContent('#status');
    check(after === before + 1 && segStatus.includes('miss cache'), 'segmented with the fine-tuned model (features cache invalidated): ' + segStatus);
    await page.click('#rollback');
    await page.waitForFunction(() => document.getElementById('version').textContent.startsWith('base'));
    check(await page.isDisabled('#rollback'), 'rolled back to the base model');
    check(problems.length === 0, 'no page errors' + (problems.length ? ': ' + problems.join('; ') : ''));
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
    await new Promise((r) => { proc.on('exit', r); setTimeout(r, 5000); });
  }
}

main().catch((e) => { console.error('E2E FAILED:', e.message); process.exit(1); });
