// vlsm serve page: one image, a mask layer per prompt. The server returns each prompt's
// 8-bit probability map, so the threshold slider works here without a round trip; brush and
// eraser strokes are kept apart from the threshold (edit: 0 none, 1 painted on, 2 erased).
'use strict';

const $ = (id) => document.getElementById(id);
const COLORS = [[0, 220, 90], [255, 80, 80], [70, 140, 255], [255, 200, 0], [200, 90, 255], [0, 210, 210]];
const S = {
  file: null, stem: 'image', img: null, w: 0, h: 0, fromServer: false,
  layers: [], active: -1, tool: 'view', size: 12, threshold: 0.5, datasetEnabled: false,
  // A volume (NIfTI, zipped DICOM series): every slice segmented at once, shown one at a time.
  isVolume: false, vol: null,
};
const canvas = $('canvas');
const ctx = canvas.getContext('2d');
const overlay = document.createElement('canvas');

function status(msg, isError) {
  $('status').textContent = msg;
  $('status').className = isError ? 'error' : '';
}

// With `vlsm serve --token T`, open the page as http://HOST:PORT/#token=T: the token stays in
// the fragment (never sent as part of a URL) and goes with each API call as a bearer token.
const TOKEN = new URLSearchParams(location.hash.slice(1)).get('token');
function api(path, init) {
  init = init || {};
  if (TOKEN) init.headers = Object.assign({}, init.headers, { Authorization: 'Bearer ' + TOKEN });
  return fetch(path, init);
}

async function errorText(resp) {
  try { return (await resp.json()).error || resp.statusText; } catch (_) { return resp.status + ' ' + resp.statusText; }
}

async function init() {
  try {
    const m = await (await api('/api/model')).json();
    S.threshold = m.default_threshold;
    $('threshold').value = S.threshold;
    $('thresholdOut').textContent = S.threshold.toFixed(2);
    S.datasetEnabled = m.dataset_enabled;
    $('model').textContent = 'model: ' + m.kind + ' (' + m.dir.split('/').filter(Boolean).pop() + ')';
    if (!m.dataset_enabled) $('save').title = 'start the server with --dataset DIR to enable saving';
  } catch (e) {
    status('cannot reach the server: ' + e, true);
  }
}

// ---- image --------------------------------------------------------------------------------

async function openFile(file) {
  if (!file) return;
  S.file = file;
  S.stem = file.name.replace(/\.(nii\.gz|[a-z0-9]+)$/i, '') || 'image';
  S.layers = []; S.active = -1; S.img = null; S.fromServer = false;
  S.isVolume = /\.(nii|nii\.gz|zip)$/i.test(file.name); S.vol = null;
  $('sliceBox').hidden = true;
  $('downloadVolume').hidden = !S.isVolume;
  $('fileinfo').textContent = file.name + ' (' + Math.round(file.size / 1024) + ' KiB)';
  renderLayers();
  try {
    // PNG/JPEG preview at once; DICOM and NIfTI appear after the first prompt (decoded by the server).
    setImage(await createImageBitmap(file, { imageOrientation: 'none' }));
    status('Type a prompt and press Enter.');
  } catch (_) {
    clearCanvas();
    $('placeholder').textContent = file.name + ': the image appears after the first prompt.';
    status('Type a prompt and press Enter.');
  }
}

function setImage(img) {
  S.img = img; S.w = img.width; S.h = img.height;
  canvas.width = S.w; canvas.height = S.h;
  overlay.width = S.w; overlay.height = S.h;
  canvas.style.display = 'block';
  $('placeholder').style.display = 'none';
  fitCanvas();
  render();
}

function clearCanvas() {
  canvas.style.display = 'none';
  $('placeholder').style.display = '';
}

function fitCanvas() {
  if (!S.w) return;
  const stage = $('stage');
  const k = Math.min((stage.clientWidth - 32) / S.w, (stage.clientHeight - 32) / S.h);
  canvas.style.width = Math.max(1, Math.floor(S.w * k)) + 'px';
  canvas.style.height = Math.max(1, Math.floor(S.h * k)) + 'px';
}

function decodePng(b64) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error('cannot decode a PNG from the server'));
    im.src = 'data:image/png;base64,' + b64;
  });
}

function grayPixels(im) {
  const c = document.createElement('canvas');
  c.width = im.width; c.height = im.height;
  const g = c.getContext('2d');
  g.drawImage(im, 0, 0);
  const rgba = g.getImageData(0, 0, im.width, im.height).data;
  const out = new Uint8Array(im.width * im.height);
  for (let i = 0; i < out.length; i++) out[i] = rgba[4 * i];
  return out;
}

// ---- segmentation -------------------------------------------------------------------------

async function segment(prompt) {
  if (!S.file) { status('Open an image first.', true); return; }
  const fd = new FormData();
  fd.append('image', S.file, S.file.name);
  fd.append('prompt', prompt);
  if (S.isVolume) return segmentVolume(fd, prompt);
  // The server's decoding is the reference for sizes (and the only one for DICOM/NIfTI).
  if (!S.fromServer) fd.append('return_image', '1');
  status('Segmenting "' + prompt + '"…');
  $('segment').disabled = true;
  try {
    const resp = await api('/api/segment', { method: 'POST', body: fd });
    if (!resp.ok) { status('Segmentation failed: ' + await errorText(resp), true); return; }
    const r = await resp.json();
    if (r.image_png) {
      setImage(await decodePng(r.image_png));
      S.fromServer = true;
    }
    for (const res of r.results) {
      const probs = grayPixels(await decodePng(res.probs_png));
      S.layers.push({
        prompt: res.prompt, color: COLORS[S.layers.length % COLORS.length], visible: true,
        probs, edit: new Uint8Array(S.w * S.h), count: 0,
      });
      S.active = S.layers.length - 1;
    }
    render();
    status('"' + prompt + '": ' + r.cache + ' cache, ' + Math.round(r.timing_ms.total) + ' ms. Move the threshold or paint to correct.');
  } catch (e) {
    status('Segmentation failed: ' + e, true);
  } finally {
    $('segment').disabled = false;
  }
}

// A volume: the server answers every slice's mask (COCO RLE) and, the first time, every slice
// as a PNG; the slider shows one slice, its masks, and keeps brush edits per slice.
async function segmentVolume(fd, prompt) {
  fd.append('volume', '1');
  if (!S.vol) fd.append('return_image', '1');
  status('Segmenting every slice for "' + prompt + '"…');
  $('segment').disabled = true;
  try {
    const resp = await api('/api/segment', { method: 'POST', body: fd });
    if (!resp.ok) { status('Segmentation failed: ' + await errorText(resp), true); return; }
    const r = await resp.json();
    if (r.slice_pngs) {
      const n = r.volume.slices;
      S.vol = { n, w: r.width, h: r.height, pngs: r.slice_pngs, imgs: new Array(n), k: Math.floor(n / 2) };
      $('slice').max = n - 1; $('slice').value = S.vol.k;
      $('sliceBox').hidden = false;
    }
    for (const res of r.results) {
      S.layers.push({
        prompt: res.prompt, color: COLORS[S.layers.length % COLORS.length], visible: true,
        rles: res.masks, edits: [], probs: null, edit: null, count: 0,
      });
      S.active = S.layers.length - 1;
    }
    await showSlice(S.vol.k);
    const d = r.volume.shape;
    status('"' + prompt + '": ' + d.join('×') + ' voxels, ' + r.results[0].voxels + ' in the mask, ' + Math.round(r.timing_ms.total) + ' ms.');
  } catch (e) {
    status('Segmentation failed: ' + e, true);
  } finally {
    $('segment').disabled = false;
  }
}

// COCO RLE (column-major, starting with a run of 0s) to a row-major 0/255 array.
function rleDecode(rle, w, h) {
  const out = new Uint8Array(w * h);
  let i = 0, v = 0;
  for (const c of rle.counts) {
    if (v) for (let j = i; j < i + c; j++) out[(j % h) * w + Math.floor(j / h)] = 255;
    i += c; v ^= 1;
  }
  return out;
}

async function showSlice(k) {
  const V = S.vol;
  if (!V) return;
  V.k = k;
  $('sliceOut').textContent = k + ' / ' + (V.n - 1);
  if (!V.imgs[k]) V.imgs[k] = await decodePng(V.pngs[k]);
  if (V.k !== k) return; // the slider moved on meanwhile
  for (const layer of S.layers) {
    layer.probs = rleDecode(layer.rles[k], V.w, V.h);
    layer.edit = layer.edits[k] || (layer.edits[k] = new Uint8Array(V.w * V.h));
  }
  setImage(V.imgs[k]);
  S.fromServer = true;
}

function maskOf(layer) {
  const t = S.threshold * 255;
  const m = new Uint8Array(layer.probs.length);
  let n = 0;
  for (let i = 0; i < m.length; i++) {
    const e = layer.edit[i];
    const on = e === 1 || (e === 0 && layer.probs[i] > t);
    if (on) { m[i] = 1; n++; }
  }
  layer.count = n;
  return m;
}

// ---- drawing ------------------------------------------------------------------------------

let pending = false;
function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; draw(); });
}

function draw() {
  if (!S.img) { renderLayers(); return; }
  ctx.clearRect(0, 0, S.w, S.h);
  ctx.drawImage(S.img, 0, 0);
  const o = overlay.getContext('2d');
  const data = o.createImageData(S.w, S.h);
  const px = data.data;
  S.layers.forEach((layer, k) => {
    const m = maskOf(layer);
    if (!layer.visible) return;
    const [r, g, b] = layer.color;
    const a = k === S.active ? 130 : 90;
    for (let i = 0; i < m.length; i++) {
      if (!m[i]) continue;
      px[4 * i] = r; px[4 * i + 1] = g; px[4 * i + 2] = b; px[4 * i + 3] = a;
    }
  });
  o.putImageData(data, 0, 0);
  ctx.drawImage(overlay, 0, 0);
  renderLayers();
}

function renderLayers() {
  const ul = $('layers');
  ul.textContent = '';
  S.layers.forEach((layer, k) => {
    const li = document.createElement('li');
    li.dataset.count = layer.count;
    li.dataset.prompt = layer.prompt;
    if (k === S.active) li.className = 'active';
    const vis = document.createElement('input');
    vis.type = 'checkbox'; vis.checked = layer.visible; vis.title = 'show';
    vis.onclick = (e) => { e.stopPropagation(); layer.visible = vis.checked; render(); };
    const sw = document.createElement('span');
    sw.className = 'swatch'; sw.style.background = 'rgb(' + layer.color.join(',') + ')';
    const name = document.createElement('span');
    name.className = 'name'; name.textContent = layer.prompt || '(empty prompt)';
    const count = document.createElement('span');
    count.className = 'count'; count.textContent = layer.count + ' px';
    const del = document.createElement('button');
    del.type = 'button'; del.textContent = '×'; del.title = 'remove';
    del.onclick = (e) => {
      e.stopPropagation();
      S.layers.splice(k, 1);
      S.active = Math.min(S.active, S.layers.length - 1);
      render();
    };
    li.append(vis, sw, name, count, del);
    li.onclick = () => { S.active = k; render(); };
    ul.append(li);
  });
  const has = S.active >= 0;
  $('download').disabled = !has;
  $('save').disabled = !has || !S.datasetEnabled;
}

// ---- brush and eraser ---------------------------------------------------------------------

let painting = false;
let last = null;
function imagePoint(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * S.w / r.width, (e.clientY - r.top) * S.h / r.height];
}

function stamp(x, y) {
  const layer = S.layers[S.active];
  const v = S.tool === 'brush' ? 1 : 2;
  const rad = S.size / 2;
  const x0 = Math.max(0, Math.floor(x - rad)), x1 = Math.min(S.w - 1, Math.ceil(x + rad));
  const y0 = Math.max(0, Math.floor(y - rad)), y1 = Math.min(S.h - 1, Math.ceil(y + rad));
  for (let yy = y0; yy <= y1; yy++) {
    for (let xx = x0; xx <= x1; xx++) {
      const dx = xx + 0.5 - x, dy = yy + 0.5 - y;
      if (dx * dx + dy * dy <= rad * rad) layer.edit[yy * S.w + xx] = v;
    }
  }
}

function strokeTo(p) {
  // Stamps along the segment so that fast moves leave no gaps.
  const [x, y] = p;
  if (last) {
    const d = Math.hypot(x - last[0], y - last[1]);
    const steps = Math.max(1, Math.ceil(d / Math.max(1, S.size / 4)));
    for (let i = 1; i <= steps; i++) stamp(last[0] + (x - last[0]) * i / steps, last[1] + (y - last[1]) * i / steps);
  } else {
    stamp(x, y);
  }
  last = p;
  render();
}

canvas.addEventListener('pointerdown', (e) => {
  if (S.tool === 'view' || S.active < 0) return;
  painting = true; last = null;
  canvas.setPointerCapture(e.pointerId);
  strokeTo(imagePoint(e));
});
canvas.addEventListener('pointermove', (e) => { if (painting) strokeTo(imagePoint(e)); });
const endStroke = () => { painting = false; last = null; };
canvas.addEventListener('pointerup', endStroke);
canvas.addEventListener('pointercancel', endStroke);

// ---- download and save --------------------------------------------------------------------

function maskBlob(layer) {
  const m = maskOf(layer);
  const c = document.createElement('canvas');
  c.width = S.w; c.height = S.h;
  const g = c.getContext('2d');
  const data = g.createImageData(S.w, S.h);
  for (let i = 0; i < m.length; i++) {
    const v = m[i] ? 255 : 0;
    data.data[4 * i] = v; data.data[4 * i + 1] = v; data.data[4 * i + 2] = v; data.data[4 * i + 3] = 255;
  }
  g.putImageData(data, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, 'image/png'));
}

function safe(s) { return s.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40) || 'mask'; }

$('download').onclick = async () => {
  const layer = S.layers[S.active];
  if (!layer) return;
  const url = URL.createObjectURL(await maskBlob(layer));
  const a = document.createElement('a');
  a.href = url; a.download = S.stem + '_' + safe(layer.prompt) + '_mask.png';
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
};

// The mask volume as .nii.gz in the scan's geometry (the model's masks; brush edits stay on the page).
$('downloadVolume').onclick = async () => {
  const layer = S.layers[S.active];
  if (!layer || !S.file) return;
  const fd = new FormData();
  fd.append('image', S.file, S.file.name);
  fd.append('prompt', layer.prompt);
  fd.append('return', 'nifti');
  status('Segmenting the volume for the download…');
  try {
    const resp = await api('/api/segment', { method: 'POST', body: fd });
    if (!resp.ok) { status('Download failed: ' + await errorText(resp), true); return; }
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement('a');
    a.href = url; a.download = S.stem + '_' + safe(layer.prompt) + '.mask.nii.gz';
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    status('Downloaded the mask volume.');
  } catch (e) {
    status('Download failed: ' + e, true);
  }
};

$('save').onclick = async () => {
  const layer = S.layers[S.active];
  if (!layer || !S.file) return;
  const fd = new FormData();
  fd.append('image', S.file, S.file.name);
  fd.append('mask', await maskBlob(layer), 'mask.png');
  fd.append('prompt', layer.prompt);
  fd.append('name', safe(S.vol ? S.stem + '_' + S.vol.k : S.stem));
  if (S.vol) fd.append('slice', S.vol.k);
  $('save').disabled = true;
  try {
    const resp = await api('/api/dataset/save', { method: 'POST', body: fd });
    if (!resp.ok) { status('Save failed: ' + await errorText(resp), true); return; }
    const r = await resp.json();
    status('Saved images/' + r.img_name + ' and masks/' + r.mask_name + ' (' + r.records + ' records in anns/train.json).');
  } catch (e) {
    status('Save failed: ' + e, true);
  } finally {
    renderLayers();
  }
};

// ---- controls -----------------------------------------------------------------------------

$('file').addEventListener('change', (e) => openFile(e.target.files[0]));
const drop = $('drop');
for (const el of [drop, $('stage')]) {
  el.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  el.addEventListener('dragleave', () => drop.classList.remove('over'));
  el.addEventListener('drop', (e) => {
    e.preventDefault(); drop.classList.remove('over');
    if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
  });
}
$('promptForm').addEventListener('submit', (e) => {
  e.preventDefault();
  const p = $('prompt').value.trim();
  if (!p) { status('Type a prompt first.', true); return; }
  segment(p);
});
$('threshold').addEventListener('input', (e) => {
  S.threshold = parseFloat(e.target.value);
  $('thresholdOut').textContent = S.threshold.toFixed(2);
  render();
});
$('slice').addEventListener('input', (e) => showSlice(parseInt(e.target.value, 10)));
$('size').addEventListener('input', (e) => { S.size = parseInt(e.target.value, 10); $('sizeOut').textContent = S.size; });
for (const r of document.querySelectorAll('input[name=tool]')) {
  r.addEventListener('change', () => {
    S.tool = r.value;
    canvas.classList.toggle('paint', S.tool !== 'view');
  });
}
window.addEventListener('resize', fitCanvas);

// ---- fine-tuning (vlsm serve --dataset DIR --train) ---------------------------------------
// "Fine-tune on my corrections" starts POST /api/train; the progress bar polls GET /api/train;
// when a run ends well the server serves the new version (shown beside "Model").

const T = { timer: null, version: null };

function showModel(m) {
  T.version = m.version;
  $('version').textContent = m.version + (m.version_meta && m.version_meta.val_dice != null
    ? ' (val Dice ' + m.version_meta.val_dice.toFixed(3) + ')' : '');
  $('model').textContent = 'model: ' + m.kind + ' ' + m.version;
  $('rollback').disabled = !m.can_rollback;
  $('finetune').hidden = !m.train_enabled;
}

async function refreshModel() {
  const m = await (await api('/api/model')).json();
  showModel(m);
  return m;
}

function showTrain(t) {
  const running = t.state === 'running';
  $('train').disabled = running;
  $('cancelTrain').hidden = !running;
  $('trainProgress').hidden = t.state === 'idle';
  $('trainProgress').value = t.progress || 0;
  let s = '';
  if (running) {
    s = 'training ' + t.version + ': epoch ' + t.epoch + '/' + t.epochs;
    if (t.loss != null) s += ', loss ' + t.loss.toFixed(3);
    if (t.val_dice != null) s += ', val Dice ' + t.val_dice.toFixed(3);
    if (t.eta_secs != null) s += ', about ' + Math.ceil(t.eta_secs) + ' s left';
  } else if (t.state === 'done') {
    s = t.version + ' ready: best val Dice ' + (t.best_val_dice != null ? t.best_val_dice.toFixed(3) : '?')
      + ' on ' + t.val_records + (t.held_out ? ' held-out' : ' training') + ' records, '
      + Math.round(t.elapsed_secs) + ' s' + (t.message ? ' (' + t.message + ')' : '');
  } else if (t.state === 'failed' || t.state === 'cancelled') {
    s = t.state + (t.message ? ': ' + t.message : '');
  }
  $('trainInfo').textContent = s;
  $('trainInfo').className = t.state === 'failed' ? 'error' : 'muted';
}

async function pollTrain() {
  clearTimeout(T.timer);
  try {
    const resp = await api('/api/train');
    if (!resp.ok) return;
    const t = await resp.json();
    showTrain(t);
    if (t.state === 'running') {
      T.timer = setTimeout(pollTrain, 1000);
    } else if (t.state === 'done' && t.version !== T.version) {
      await refreshModel();
      status('Now serving ' + T.version + '; segment again to use it.');
    }
  } catch (e) {
    T.timer = setTimeout(pollTrain, 3000);
  }
}

$('train').onclick = async () => {
  const epochs = parseInt($('epochs').value, 10);
  $('train').disabled = true;
  const resp = await api('/api/train', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(Number.isFinite(epochs) ? { epochs } : {}),
  });
  if (!resp.ok) { status('Fine-tune not started: ' + await errorText(resp), true); $('train').disabled = false; return; }
  showTrain(await resp.json());
  pollTrain();
};

$('cancelTrain').onclick = async () => {
  const resp = await api('/api/train', { method: 'DELETE' });
  if (!resp.ok) status('Cancel failed: ' + await errorText(resp), true);
  pollTrain();
};

$('rollback').onclick = async () => {
  const resp = await api('/api/model/rollback', { method: 'POST' });
  if (!resp.ok) { status('Rollback failed: ' + await errorText(resp), true); return; }
  showModel(Object.assign(await (await api('/api/model')).json()));
  status('Rolled back: now serving ' + T.version + '.');
};

init().then(async () => {
  try {
    const m = await refreshModel();
    if (m.train_enabled) pollTrain();
  } catch (_) { /* init reported it */ }
});
