"""The instructor's page: one self-contained HTML file (no CDN, works offline) served at ``/``.

A class compares models side by side for one user: pick a user and a time of day, and every stored model's
top-K shows in its own column with titles, genres and the model's stored metrics, below the user's recent
history (latest first), so the lists can be judged against what the user actually watched. Context-aware
models show their list for the chosen time of day; context-free ones show their single list. When only the
time of day changes, items that were not in a column's previous list are marked "new".

The page reads ``/models``, ``/users``, ``/users/{user}/recommendations`` and ``/users/{user}/history``.
The time-of-day names are generated from :data:`recsys_tutorial.data.context.TIME_OF_DAY`, the same tuple
the API validates against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..data.context import TIME_OF_DAY
from .store import NO_CONTEXT

__all__ = ["PAGE_HTML", "render_page"]

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>recsys-tutorial: compare recommenders for one user</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
  label { margin-right: 1rem; }
  #columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1.5rem; }
  section.model h2, #history h2 { font-size: 1.1rem; margin: 1rem 0 .2rem; }
  .note { color: #555; font-size: .85rem; margin: .1rem 0 .4rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
  td.genres { color: #555; font-size: .85rem; }
  tr.new { background: #fff3c4; }
  .badge { font-size: .75rem; color: #8a6d00; margin-left: .4rem; }
  #history ol { margin: .2rem 0; padding-left: 1.6rem; }
  #history li { margin: .1rem 0; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>Compare recommenders for one user</h1>
<p>Each column is one stored model's top-K, precomputed by the batch pipeline and read through the API. The
user's recent history is above them: do the lists fit what this user watched?</p>
<div>
  <label>User <select id="user"></select></label>
  <label>Time of day <select id="context"></select></label>
  <label>K <input id="k" type="number" min="1" max="100" value="10" style="width:4rem"></label>
</div>
<p id="error" class="error" role="alert"></p>
<section id="history">
  <h2>Recent history</h2>
  <p class="note" id="history-note"></p>
  <ol></ol>
</section>
<div id="columns"></div>
<script>
"use strict";
const CONTEXTS = __CONTEXTS__;  // from recsys_tutorial.data.context.TIME_OF_DAY
const NO_CONTEXT = __NO_CONTEXT__;
const HISTORY_N = 10;
const $ = (id) => document.getElementById(id);
let models = {};
let previous = {};  // model -> {user, context, items}: marks what a change of time of day brought in
let request = 0;  // only the latest request's answers are drawn

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
  return body;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function label(it) {  // MovieLens titles already end with "(1995)": add the year only where it is missing
  const title = it.title ?? `item ${it.item}`;
  return it.year && !title.endsWith(`(${it.year})`) ? `${title} (${it.year})` : title;
}

function columnFor(name) {
  const section = element("section", undefined, "model");
  section.dataset.model = name;
  const info = models[name];
  const metrics = Object.entries(info.metrics ?? {}).map(([m, v]) => `${m} ${Number(v).toFixed(4)}`).join(", ");
  const kind = info.contexts.includes(NO_CONTEXT) ? "one list at any time of day" : "one list per time of day";
  section.append(element("h2", name), element("p", `${kind}${metrics ? "; " + metrics : ""}`, "note"),
                 element("p", "", "note summary"), element("p", "", "error"));
  const table = element("table");
  const head = element("tr");
  for (const h of ["Rank", "Title", "Genres"]) head.append(element("th", h));
  table.append(element("thead"), element("tbody"));
  table.tHead.append(head);
  section.append(table);
  return section;
}

function drawList(section, data, user, context) {
  const name = section.dataset.model;
  const before = previous[name];
  const compare = before && before.user === user && before.context !== data.context;
  const rows = data.items.map((it) => {
    const tr = element("tr");
    tr.dataset.item = it.item;
    tr.append(element("td", it.rank));
    const title = element("td", label(it));
    if (compare && !before.items.has(it.item)) {
      tr.className = "new";
      title.append(element("span", "new", "badge"));
    }
    tr.append(title, element("td", it.genres.join(", "), "genres"));
    return tr;
  });
  section.querySelector("tbody").replaceChildren(...rows);
  const changed = compare ? data.items.filter((it) => !before.items.has(it.item)).length : null;
  const summary = section.querySelector(".summary");
  summary.textContent = `${data.context === NO_CONTEXT ? "same list at any time" : data.context}` +
    (compare ? `: ${changed} of ${data.items.length} differ from the ${before.context} list` : "");
  summary.dataset.changed = changed ?? "";
  previous[name] = { user, context: data.context, items: new Set(data.items.map((it) => it.item)) };
}

async function showColumn(section, user, context, k, current) {
  const name = section.dataset.model;
  const params = new URLSearchParams({ model: name, k: Math.min(k, models[name].k) });
  if (!models[name].contexts.includes(NO_CONTEXT)) params.set("context", context);
  try {
    const data = await getJSON(`/users/${encodeURIComponent(user)}/recommendations?${params}`);
    if (current !== request) return;
    section.querySelector(".error").textContent = "";
    drawList(section, data, user, context);
  } catch (err) {
    if (current !== request) return;
    section.querySelector(".error").textContent = err.message;
    section.querySelector("tbody").replaceChildren();
    delete previous[name];
  }
}

async function showHistory(user, current) {
  const list = $("history").querySelector("ol");
  try {
    const data = await getJSON(`/users/${encodeURIComponent(user)}/history?n=${HISTORY_N}`);
    if (current !== request) return;
    $("history-note").textContent = `User ${user}: the ${data.items.length} most recent films, latest first.`;
    list.replaceChildren(...data.items.map((it) => {
      const li = element("li", `${label(it)}, ${it.genres.join(", ")} (rated ${it.timestamp.slice(0, 10)})`);
      li.dataset.item = it.item;
      return li;
    }));
  } catch (err) {
    if (current !== request) return;
    $("history-note").textContent = err.message;
    list.replaceChildren();
  }
}

async function show() {
  const current = ++request;
  const user = $("user").value, context = $("context").value, k = Number($("k").value);
  document.body.dataset.shown = "";
  const columns = [...document.querySelectorAll("section.model")];
  await Promise.all([showHistory(user, current), ...columns.map((s) => showColumn(s, user, context, k, current))]);
  if (current === request) document.body.dataset.shown = `${user}/${context}/${k}`;
}

async function start() {
  try {
    $("context").replaceChildren(...CONTEXTS.map((c) => new Option(c, c)));
    models = await getJSON("/models");
    const names = Object.keys(models).sort();
    if (!names.length) throw new Error("the store holds no models yet: run the batch pipeline first");
    $("k").max = Math.max(...names.map((m) => models[m].k));
    $("columns").replaceChildren(...names.map(columnFor));
    const lists = await Promise.all(names.map((m) => getJSON(`/users?model=${encodeURIComponent(m)}`)));
    const users = [...new Set(lists.flatMap((l) => l.users))].sort((a, b) => a - b);
    $("user").replaceChildren(...users.map((u) => new Option(String(u), String(u))));
    await show();
  } catch (err) {
    $("error").textContent = err.message;
  }
  for (const id of ["user", "context", "k"]) $(id).addEventListener("change", show);
  document.body.dataset.ready = "1";
}
start();
</script>
</body>
</html>
"""


def render_page(contexts: Sequence[str] = TIME_OF_DAY) -> str:
    """The page with the time-of-day names ``contexts`` written into its script (as a JSON array)."""
    if not contexts or not all(isinstance(c, str) and c for c in contexts):
        raise ValueError(f"contexts must be non-empty names, got {contexts!r}")
    # JSON is valid JavaScript; "</" is escaped so that no name can close the <script> element.
    as_js = lambda value: json.dumps(value).replace("</", "<\\/")  # noqa: E731
    return _TEMPLATE.replace("__CONTEXTS__", as_js(list(contexts))).replace("__NO_CONTEXT__", as_js(NO_CONTEXT))


PAGE_HTML = render_page()
