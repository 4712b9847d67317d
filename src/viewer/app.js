// wangge viewer: every layer of the served store on a MapLibre map, layer
// toggles with a legend, search by code, click to inspect, and the planner's
// edit tools (split, merge, move a building, lock, rebalance) over the edit
// API. No build step, no network beyond this server.
(async () => {
  'use strict';
  const state = {
    map: null, source: null, selected: null, building: null, mode: null,
    lastEdit: null, ready: false, gridLayers: [], buildingLayers: [],
    live: { seq: null, events: 0, redraws: 0 },
  };
  window.wangge = state;
  const $ = (id) => document.getElementById(id);

  function say(msg, error = false) {
    const m = $('message');
    m.textContent = msg;
    m.className = error ? 'error' : '';
  }

  async function getJSON(url, opts) {
    const r = await fetch(url, opts);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const e = new Error(body.error || `${r.status} ${r.statusText}`);
      e.status = r.status;
      throw e;
    }
    return body;
  }

  function bboxOf(geometry) {
    const b = [Infinity, Infinity, -Infinity, -Infinity];
    const walk = (c) => {
      if (typeof c[0] === 'number') {
        b[0] = Math.min(b[0], c[0]); b[1] = Math.min(b[1], c[1]);
        b[2] = Math.max(b[2], c[0]); b[3] = Math.max(b[3], c[1]);
      } else c.forEach(walk);
    };
    walk(geometry.coordinates);
    return [[b[0], b[1]], [b[2], b[3]]];
  }

  const style = await getJSON('/style.json');
  state.source = Object.keys(style.sources).find((s) => style.sources[s].type === 'vector');
  const map = new maplibregl.Map({ container: 'map', style, hash: true, attributionControl: { compact: true } });
  state.map = map;
  map.addControl(new maplibregl.NavigationControl(), 'top-left');
  map.addControl(new maplibregl.ScaleControl(), 'bottom-left');

  map.on('load', async () => {
    map.addSource('selection', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
    map.addLayer({ id: 'selection-fill', type: 'fill', source: 'selection', paint: { 'fill-color': '#0b57d0', 'fill-opacity': 0.18 } });
    map.addLayer({ id: 'selection-line', type: 'line', source: 'selection', paint: { 'line-color': '#0b57d0', 'line-width': 3 } });
    const layers = map.getStyle().layers;
    state.gridLayers = layers.filter((l) => l['source-layer'] === 'grids' && l.type === 'fill').map((l) => l.id);
    state.buildingLayers = layers.filter((l) => l['source-layer'] === 'buildings' && l.type === 'fill').map((l) => l.id);
    buildLayerList(layers);
    if (!location.hash && style.center === undefined) {
      const tj = await getJSON(style.sources[state.source].url).catch(() => null);
      if (tj && tj.bounds) map.fitBounds([[tj.bounds[0], tj.bounds[1]], [tj.bounds[2], tj.bounds[3]]], { duration: 0 });
    }
    map.once('idle', () => { state.ready = true; });
  });

  function colourOf(layer) {
    const p = layer.paint || {};
    const c = p['fill-color'] ?? p['line-color'] ?? p['circle-color'];
    return typeof c === 'string' ? c : null;
  }

  function buildLayerList(layers) {
    const groups = new Map();
    for (const l of layers) {
      const name = l['source-layer'];
      if (!name) continue;
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(l);
    }
    const list = $('layer-list');
    list.replaceChildren();
    for (const [name, ls] of groups) {
      const li = document.createElement('li');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = ls.some((l) => (l.layout || {}).visibility !== 'none');
      box.id = `toggle-${name}`;
      box.addEventListener('change', () => {
        for (const l of ls) map.setLayoutProperty(l.id, 'visibility', box.checked ? 'visible' : 'none');
      });
      const sw = document.createElement('span');
      sw.className = 'swatch';
      const c = ls.map(colourOf).find(Boolean);
      sw.style.background = c || 'linear-gradient(90deg, #2b8cbe, #f7f7f7, #e34a33)';
      sw.title = c ? c : 'by value (grids: households against the target, blue below, red above)';
      const label = document.createElement('label');
      label.htmlFor = box.id;
      const zooms = ls.map((l) => [l.minzoom ?? 0, l.maxzoom ?? 24]);
      label.textContent = `${name} (z${Math.min(...zooms.map((z) => z[0]))}+)`;
      li.append(box, sw, label);
      list.append(li);
    }
  }

  function showFeature(f) {
    state.selected = f;
    const p = f.properties;
    $('inspect').hidden = false;
    $('inspect-code').textContent = p.code;
    $('inspect-name').textContent = p.name || '';
    const rows = Object.entries(p).filter(([k]) => !['code', 'name'].includes(k));
    const table = $('inspect-props');
    table.replaceChildren();
    for (const [k, v] of rows) {
      const tr = document.createElement('tr');
      const a = document.createElement('td');
      const b = document.createElement('td');
      a.textContent = k;
      b.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
      tr.append(a, b);
      table.append(tr);
    }
    map.getSource('selection').setData({ type: 'FeatureCollection', features: [f] });
    const isGrid = String(p.code).length === 15;
    for (const id of ['btn-split', 'btn-merge', 'btn-move', 'btn-lock']) $(id).disabled = !isGrid;
    $('btn-rebalance').disabled = false;
    $('btn-lock').textContent = p.locked ? 'Unlock' : 'Lock';
  }

  async function select(code, fit = false) {
    const url = code.length === 15 ? `/v1/grids/${code}` : `/v1/communities/${code}`;
    // With the edit token the server answers exact counts (planners need
    // them); without it, counts under the privacy threshold read "<10".
    const token = $('token').value.trim();
    let f;
    if (token) {
      try {
        f = await getJSON(url, { headers: { Authorization: `Bearer ${token}` } });
      } catch (err) {
        if (err.status !== 401 && err.status !== 403) throw err;
        say(`token not accepted (${err.message}); public counts shown`, true);
      }
    }
    if (!f) f = await getJSON(url);
    showFeature(f);
    if (fit) map.fitBounds(bboxOf(f.geometry), { padding: 40, duration: 0 });
    return f;
  }

  $('search').addEventListener('submit', async (e) => {
    e.preventDefault();
    const code = $('search-code').value.trim();
    if (!/^\d{12}$|^\d{15}$/.test(code)) {
      say('enter a 15-digit grid code or a 12-digit community code', true);
      return;
    }
    try {
      await select(code, true);
      say(`found ${code}`);
    } catch (err) {
      say(`${code}: ${err.message}`, true);
    }
  });

  function setMode(mode, text) {
    state.mode = mode;
    $('mode').textContent = text || '';
  }

  map.on('click', async (e) => {
    const feats = map.queryRenderedFeatures(e.point, { layers: [...state.gridLayers, ...state.buildingLayers] });
    const grid = feats.find((f) => f.sourceLayer === 'grids');
    const building = feats.find((f) => f.sourceLayer === 'buildings');
    try {
      if (state.mode === 'merge' && grid) {
        setMode(null);
        await edit({ op: 'merge', grids: [state.selected.properties.code, grid.properties.code] });
      } else if (state.mode === 'pick-building' && building) {
        state.building = building.properties.id;
        setMode('move', `building ${state.building}: now click the grid it moves to`);
      } else if (state.mode === 'move' && grid) {
        setMode(null);
        await edit({ op: 'move', building: state.building, to: grid.properties.code });
      } else if (grid) {
        await select(grid.properties.code);
        say(`grid ${grid.properties.code}`);
      }
    } catch (err) {
      say(err.message, true);
    }
  });

  $('token').value = localStorage.getItem('wangge-token') || '';
  $('token').addEventListener('change', () => localStorage.setItem('wangge-token', $('token').value));

  async function refreshTiles() {
    const src = map.getSource(state.source);
    const tj = await getJSON(style.sources[state.source].url);
    const stamp = Date.now();
    src.setTiles(tj.tiles.map((t) => `${t}${t.includes('?') ? '&' : '?'}v=${stamp}`));
  }

  // Live: the server's change stream. An event whose tiles are in view
  // (at the zoom drawn, or one around it) has the map request its tiles
  // again; the selected grid's panel is read again when the event names
  // it.
  function tilesInView(tiles) {
    const z = Math.min(16, Math.floor(map.getZoom()));
    const b = map.getBounds();
    const tx = (lon, zz) => Math.floor((lon + 180) / 360 * 2 ** zz);
    const ty = (lat, zz) => {
      const r = lat * Math.PI / 180;
      return Math.floor((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2 * 2 ** zz);
    };
    return tiles.some((t) => {
      const [tz, x, y] = t.split('/').map(Number);
      if (Math.abs(tz - z) > 1) return false;
      return x >= tx(b.getWest(), tz) && x <= tx(b.getEast(), tz)
        && y >= ty(b.getNorth(), tz) && y <= ty(b.getSouth(), tz);
    });
  }
  let redraw = null;
  function scheduleRedraw() {
    if (redraw) return;
    redraw = setTimeout(async () => {
      redraw = null;
      // The same tile URLs, asked for again; the server's cache answers
      // the unchanged ones.
      const src = map.getSource(state.source);
      const tj = await getJSON(style.sources[state.source].url).catch(() => null);
      if (src && tj) src.setTiles(tj.tiles);
      state.live.redraws += 1;
    }, 250);
  }
  if (window.EventSource) {
    const es = new EventSource('/v1/changes/stream');
    es.addEventListener('change', (e) => {
      const d = JSON.parse(e.data);
      state.live.seq = d.seq;
      state.live.events += 1;
      $('live').textContent = `live · change ${d.seq}`;
      if (d.tiles_truncated || tilesInView(d.tiles)) scheduleRedraw();
      const sel = state.selected && state.selected.properties.code;
      if (sel && d.grid_codes.includes(sel)) select(sel).catch(() => {});
    });
    es.addEventListener('reset', scheduleRedraw);
    es.onerror = () => { $('live').textContent = 'live · reconnecting'; };
  }

  async function edit(body) {
    const sel = state.selected;
    if (!sel) throw new Error('select a grid first');
    const p = sel.properties;
    const community = p.community_code || p.code;
    const version = p.version ?? (await getJSON(`/v1/communities/${community}`)).properties.version;
    say(`${body.op} …`);
    let out;
    try {
      out = await getJSON(`/v1/communities/${community}/edits`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Authorization: `Bearer ${$('token').value}`,
          'If-Match': `"${version}"`,
        },
        body: JSON.stringify(body),
      });
    } catch (err) {
      if (err.status === 412) throw new Error(`${err.message} — someone else edited this community; select the grid again`);
      throw err;
    }
    state.lastEdit = out;
    await refreshTiles();
    const keep = body.op === 'merge' ? [...body.grids].sort()[0] : body.op === 'move' ? body.to : (p.code.length === 15 ? p.code : null);
    if (keep && !out.removed.includes(keep)) await select(keep);
    const parts = [['added', out.added], ['removed', out.removed], ['changed', out.changed]]
      .filter(([, l]) => l.length).map(([k, l]) => `${k} ${l.join(', ')}`);
    say(`version ${out.version}: ${out.op}. ${parts.join('; ')}`);
    return out;
  }
  state.edit = edit;

  $('btn-split').addEventListener('click', () =>
    edit({ op: 'split', grid: state.selected.properties.code, parts: Number($('split-parts').value) || 2 })
      .catch((err) => say(err.message, true)));
  $('btn-merge').addEventListener('click', () => setMode('merge', `click a neighbour of ${state.selected.properties.code} to merge with`));
  $('btn-move').addEventListener('click', () => setMode('pick-building', 'click a building (zoom 14+), then the grid it moves to'));
  $('btn-lock').addEventListener('click', () => {
    const p = state.selected.properties;
    edit({ op: p.locked ? 'unlock' : 'lock', grid: p.code }).catch((err) => say(err.message, true));
  });
  $('btn-rebalance').addEventListener('click', () => edit({ op: 'rebalance' }).catch((err) => say(err.message, true)));
})().catch((err) => {
  const m = document.getElementById('message');
  m.textContent = `viewer failed to start: ${err.message}`;
  m.className = 'error';
});
