// Drives the wangge viewer in headless Debian chromium (playwright-core):
// loads the page from a running `wangge serve`, waits for the map, checks
// that grid features are rendered, searches a community, clicks a grid and
// reads its code from the panel, merges it with a neighbour through the UI
// and checks the redrawn tiles. Prints one JSON object of observations; the
// Rust test (tests/it/viewer.rs) asserts on them against the server's API.
//
// usage: node viewer.mjs BASE_URL COMMUNITY GRID_A GRID_B TOKEN SCREENSHOT.png
import { chromium } from 'playwright-core';

const [base, community, gridA, gridB, token, shot] = process.argv.slice(2);
const out = { errors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => out.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') out.errors.push(`console: ${m.text()}`); });
  await page.goto(`${base}/`);
  await page.waitForFunction(() => window.wangge && window.wangge.ready, null, { timeout: 90000 });
  out.layers = await page.$$eval('#layer-list li label', (ls) => ls.map((l) => l.textContent));

  // Search the community: the map fits it.
  await page.fill('#search-code', community);
  await page.press('#search-code', 'Enter');
  await page.waitForFunction((c) => document.getElementById('inspect-code').textContent === c, community, { timeout: 30000 });
  const idle = () => page.evaluate(() => new Promise((r) => {
    const m = window.wangge.map;
    if (m.loaded() && m.areTilesLoaded()) r(); else m.once('idle', r);
  }));
  await idle();

  // Which grid is drawn where: sample the map every 12 px.
  const sample = () => page.evaluate(() => {
    const w = window.wangge;
    const canvas = w.map.getCanvas();
    const W = canvas.clientWidth, H = canvas.clientHeight;
    const at = {};
    for (let y = 6; y < H; y += 12) {
      for (let x = 6; x < W; x += 12) {
        const f = w.map.queryRenderedFeatures([x, y], { layers: w.gridLayers })[0];
        if (!f) continue;
        (at[f.properties.code] ||= []).push([x, y]);
      }
    }
    return at;
  });
  const before = await sample();
  out.rendered_grids = Object.keys(before).sort();
  const box = await page.locator('#map').boundingBox();
  // The middle sample of a grid's pixels, with its lon/lat.
  const pick = async (at, code) => {
    const pts = at[code];
    if (!pts) return null;
    const [x, y] = pts[Math.floor(pts.length / 2)];
    const ll = await page.evaluate(([x, y]) => window.wangge.map.unproject([x, y]).toArray(), [x, y]);
    return { x, y, lon: ll[0], lat: ll[1] };
  };

  // Click grid A: the panel shows its code.
  const a = await pick(before, gridA);
  out.click_a = a;
  if (a) {
    await page.mouse.click(box.x + a.x, box.y + a.y);
    await page.waitForFunction((c) => document.getElementById('inspect-code').textContent === c, gridA, { timeout: 30000 })
      .catch(() => {});
    out.panel_code = await page.textContent('#inspect-code');
  }

  // Merge A with B through the UI.
  const b = await pick(before, gridB);
  out.click_b = b;
  if (a && b) {
    await page.fill('#token', token);
    await page.dispatchEvent('#token', 'change');
    await page.click('#btn-merge');
    await page.mouse.click(box.x + b.x, box.y + b.y);
    await page.waitForFunction(() => window.wangge.lastEdit || document.getElementById('message').className === 'error', null, { timeout: 60000 });
    out.message = await page.textContent('#message');
    out.last_edit = await page.evaluate(() => window.wangge.lastEdit);
    await page.waitForTimeout(500);
    await idle();
    const after = await sample();
    out.rendered_after = Object.keys(after).sort();
    out.code_at_b_after = await page.evaluate(([x, y]) => {
      const w = window.wangge;
      const f = w.map.queryRenderedFeatures([x, y], { layers: w.gridLayers })[0];
      return f ? f.properties.code : null;
    }, [b.x, b.y]);
    out.panel_code_after = await page.textContent('#inspect-code');

    // Live: 12 persons added through the change feed by another client
    // show in the drawn grid's `persons` without a reload.
    const personsAt = () => page.evaluate(([x, y]) => {
      const w = window.wangge;
      const f = w.map.queryRenderedFeatures([x, y], { layers: w.gridLayers })[0];
      return f ? f.properties.persons ?? null : null;
    }, [a.x, a.y]);
    out.live_persons_before = await personsAt();
    const redraws = await page.evaluate(() => window.wangge.live.redraws);
    // Tile answers from now on, by status: a redraw revalidates.
    const statuses = {};
    page.on('response', (resp) => {
      if (resp.url().includes('/tiles/')) statuses[resp.status()] = (statuses[resp.status()] || 0) + 1;
    });
    const changes = Array.from({ length: 12 }, (_, i) => ({
      change_id: `viewer-live-${i}`, op: 'add', layer: 'persons', id: `VIEWER-LIVE-${i}`, lon: a.lon, lat: a.lat,
    }));
    const r = await fetch(`${base}/v1/changes`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify(changes),
    });
    out.live_post = r.status;
    out.live_answer = await r.json();
    await page.waitForFunction((n) => window.wangge.live.redraws > n, redraws, { timeout: 30000 })
      .catch(() => {});
    await idle();
    out.live = await page.evaluate(() => window.wangge.live);
    out.live_status = await page.textContent('#live');
    out.live_persons_after = await personsAt();
    out.live_tile_statuses = statuses;
  }
  await page.screenshot({ path: shot });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
