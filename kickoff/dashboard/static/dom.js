// Building the page from data, safely: text goes in as text nodes (never innerHTML),
// attributes through setAttribute from a short allow-list, links only to this page.

const ATTRIBUTES = new Set([
  "class", "id", "title", "type", "value", "placeholder", "name", "for", "role",
  "colspan", "disabled", "hidden", "selected", "checked", "aria-label", "data-id",
  "data-state", "data-testid", "autocomplete", "spellcheck", "min", "inputmode",
]);
const SVG_ATTRIBUTES = new Set([
  "class", "viewBox", "x", "y", "width", "height", "x1", "x2", "y1", "y2", "d",
  "preserveAspectRatio", "text-anchor", "dominant-baseline", "role", "aria-label",
]);
const SVG = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// h("td", {class: "x"}, "text", otherNode): an element; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "href") node.setAttribute("href", safeHref(value));
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (ATTRIBUTES.has(name)) node.setAttribute(name, value === true ? "" : String(value));
    else throw new Error(`attribute ${name} is not allowed`);
  }
  return append(node, children);
}

// An SVG element, as h() does for HTML.
export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (!SVG_ATTRIBUTES.has(name)) throw new Error(`attribute ${name} is not allowed`);
    node.setAttribute(name, String(value));
  }
  return append(node, children);
}

// Only links within the dashboard ("#/..."): data never becomes a URL elsewhere.
function safeHref(value) {
  const text = String(value);
  return text.startsWith("#/") ? text : "#/";
}

export function clear(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export function byId(id) {
  return document.getElementById(id);
}

// "3 s ago", "4 min ago": how long since an ISO time, by the browser's clock.
export function ago(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// "2026-01-02 13:04:05" in local time, for a table cell; the ISO time in its title.
export function when(iso) {
  if (!iso) return h("span", {class: "muted"}, "–");
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return h("time", {title: iso}, text);
}

export function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

// Any JSON value, readably: a field the dashboard has no special view for still shows.
export function value(v) {
  if (v === null || v === undefined) return h("span", {class: "muted"}, "–");
  if (Array.isArray(v) && v.every((x) => typeof x !== "object")) {
    return v.length ? tags(v) : h("span", {class: "muted"}, "none");
  }
  if (typeof v === "object") return h("code", {class: "json"}, JSON.stringify(v));
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

// 17179869184 -> "16G", as kickoff/resources.py shows an amount (binary suffixes).
export function amount(n) {
  const units = [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];
  const unit = units.find(([, u]) => n >= u && n % u === 0);
  return unit ? `${n / unit[1]}${unit[0]}` : String(n);
}

// {gpu: 2, mem: 17179869184} -> "gpu=2 mem=16G" ("" for none).
export function amounts(found) {
  return Object.entries(found || {}).map(([k, n]) => `${k}=${amount(n)}`).join(" ");
}

export function tags(list) {
  return h("span", {class: "tags"}, (list || []).map((t) => h("span", {class: "tag"}, String(t))));
}

export function badge(state) {
  return h("span", {class: "state", "data-state": state}, state);
}

// A generic key/value list of an object, known keys first, in their order.
export function fields(object, order = [], skip = new Set()) {
  const keys = [...order.filter((k) => k in object), ...Object.keys(object).filter(
    (k) => !order.includes(k))].filter((k) => !skip.has(k));
  return h("dl", {class: "fields"}, keys.map((k) => [h("dt", {}, k), h("dd", {}, value(object[k]))]));
}
