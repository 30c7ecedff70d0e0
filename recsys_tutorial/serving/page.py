"""The instructor's page: one self-contained HTML file (no CDN, works offline) served at ``/``.

Pick a model, a user and a time of day; the page fetches ``/users/{user}/recommendations`` and shows
the top-K with titles and genres. Items that were not in the previous list for the same user and model
are marked "new", so switching from morning to evening shows what context changed.
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>recsys-tutorial: top-K by time of day</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 60rem; color: #222; }
  label { margin-right: 1rem; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
  .new { background: #fff3c4; }
  .badge { font-size: .75rem; color: #8a6d00; margin-left: .4rem; }
  #error { color: #b00020; }
  #summary { color: #555; }
</style>
</head>
<body>
<h1>Top-K recommendations by time of day</h1>
<p>Lists precomputed by the batch pipeline and stored in SQLite; this page reads them through the API.</p>
<div>
  <label>Model <select id="model"></select></label>
  <label>User <select id="user"></select></label>
  <label>Time of day
    <select id="context">
      <option value="night">night</option>
      <option value="morning" selected>morning</option>
      <option value="afternoon">afternoon</option>
      <option value="evening">evening</option>
    </select>
  </label>
  <label>K <input id="k" type="number" min="1" max="100" value="10" style="width:4rem"></label>
</div>
<p id="summary"></p>
<p id="error" role="alert"></p>
<table id="list">
  <thead><tr><th>Rank</th><th>Title</th><th>Year</th><th>Genres</th><th>Score</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let previous = { key: null, items: new Set(), context: null };
let models = {};

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
  return body;
}

function fill(select, values, chosen) {
  select.replaceChildren(...values.map((v) => new Option(String(v), String(v), false, String(v) === chosen)));
}

async function loadUsers() {
  const stored = models[$("model").value].k;  // lists hold this many items: K can not exceed it
  $("k").max = stored;
  $("k").value = Math.min(Number($("k").value), stored);
  const data = await getJSON(`/users?model=${encodeURIComponent($("model").value)}`);
  fill($("user"), data.users, $("user").value || String(data.users[0]));
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function show() {
  $("error").textContent = "";
  const params = new URLSearchParams({ k: $("k").value, context: $("context").value, model: $("model").value });
  let data;
  try {
    data = await getJSON(`/users/${encodeURIComponent($("user").value)}/recommendations?${params}`);
  } catch (err) {
    $("error").textContent = err.message;
    $("list").tBodies[0].replaceChildren();
    return;
  }
  const key = `${data.model}/${data.user}`;
  const compare = previous.key === key && previous.context !== data.context;
  const rows = data.items.map((it) => {
    const tr = document.createElement("tr");
    tr.dataset.item = it.item;
    cell(tr, it.rank);
    const title = cell(tr, it.title ?? `item ${it.item}`);
    if (compare && !previous.items.has(it.item)) {
      tr.className = "new";
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "new";
      title.appendChild(badge);
    }
    cell(tr, it.year ?? "");
    cell(tr, it.genres.join(", "));
    cell(tr, it.score.toFixed(4));
    return tr;
  });
  $("list").tBodies[0].replaceChildren(...rows);
  const changed = compare ? data.items.filter((it) => !previous.items.has(it.item)).length : null;
  $("summary").textContent = `${data.model}, user ${data.user}, ${data.context}: generated ${data.generated_at}` +
    (compare ? ` | ${changed} of ${data.items.length} items differ from the ${previous.context} list` : "") +
    (data.context === "any" ? " | this model ignores the time of day: one list for all" : "");
  $("summary").dataset.changed = changed ?? "";
  previous = { key, items: new Set(data.items.map((it) => it.item)), context: data.context };
}

async function start() {
  try {
    models = await getJSON("/models");
    const names = Object.keys(models);
    const contextual = names.find((m) => !models[m].contexts.includes("any"));
    fill($("model"), names, contextual ?? names[0]);
    await loadUsers();
    await show();
  } catch (err) {
    $("error").textContent = err.message;
  }
  $("model").addEventListener("change", async () => { await loadUsers(); await show(); });
  for (const id of ["user", "context", "k"]) $(id).addEventListener("change", show);
  document.body.dataset.ready = "1";
}
start();
</script>
</body>
</html>
"""
