// Accessibility checks run inside the page through WebDriver "execute script". Returns an array of
// findings (strings); an empty array means the page passed. Written for medai's browser tests.
//
// Checked: the document has a lang and a non-empty title; there is a <main> (or role=main) and a
// <nav> (or role=navigation) unless the page opts out of navigation; every visible form control
// has an accessible name from a label (for= or wrapping), aria-label or aria-labelledby; every
// <img> has an alt attribute; ids are unique; and visible text contrasts with its background
// by at least 4.5:1 (WCAG 2 relative luminance).
const requireNav = arguments[0];
const findings = [];

function describe(el) {
  let d = el.tagName.toLowerCase();
  if (el.id) d += "#" + el.id;
  if (el.getAttribute("name")) d += "[name=" + el.getAttribute("name") + "]";
  const text = (el.textContent || "").trim().replace(/\s+/g, " ");
  if (text) d += " \"" + text.slice(0, 40) + "\"";
  return d;
}

function visible(el) {
  const s = getComputedStyle(el);
  if (s.display === "none" || s.visibility === "hidden" || s.visibility === "collapse") return false;
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
}

// Document level.
const lang = document.documentElement.getAttribute("lang");
if (!lang || !lang.trim()) findings.push("<html> has no lang");
if (!document.title || !document.title.trim()) findings.push("the page has no <title>");
if (!document.querySelector("main, [role=main]")) findings.push("no <main> landmark");
if (requireNav && !document.querySelector("nav, [role=navigation]")) {
  findings.push("no <nav> landmark");
}

// Unique ids (a label's for= would otherwise point at the wrong control).
const seen = new Map();
for (const el of document.querySelectorAll("[id]")) {
  seen.set(el.id, (seen.get(el.id) || 0) + 1);
}
for (const [id, n] of seen) {
  if (n > 1) findings.push("id \"" + id + "\" is used " + n + " times");
}

// Form controls need an accessible name.
function labelled(el) {
  const aria = el.getAttribute("aria-label");
  if (aria && aria.trim()) return true;
  const by = el.getAttribute("aria-labelledby");
  if (by) {
    const text = by.split(/\s+/)
      .map((id) => document.getElementById(id))
      .filter((x) => x)
      .map((x) => x.textContent.trim())
      .join("");
    if (text) return true;
  }
  if (el.labels && Array.from(el.labels).some((l) => l.textContent.trim())) return true;
  return false;
}
for (const el of document.querySelectorAll("input, select, textarea")) {
  const type = (el.getAttribute("type") || "").toLowerCase();
  if (type === "hidden") continue;
  if (type === "submit" || type === "reset" || type === "button") {
    if (!(el.value || "").trim() && !labelled(el)) findings.push("button without text: " + describe(el));
    continue;
  }
  if (type === "image") {
    if (!el.getAttribute("alt")) findings.push("image button without alt: " + describe(el));
    continue;
  }
  if (!labelled(el)) findings.push("form control without a label: " + describe(el));
}
for (const el of document.querySelectorAll("button")) {
  if (!el.textContent.trim() && !labelled(el) && !el.getAttribute("title")) {
    findings.push("button without text: " + describe(el));
  }
}

// Images need alt text (alt="" marks a decorative image and is allowed).
for (const img of document.querySelectorAll("img")) {
  if (!img.hasAttribute("alt")) findings.push("img without alt: " + (img.getAttribute("src") || "?"));
}
for (const svg of document.querySelectorAll("svg[role=img]")) {
  const named = svg.getAttribute("aria-label") || svg.getAttribute("aria-labelledby") ||
    svg.querySelector("title");
  if (!named) findings.push("svg role=img without a name");
}

// Contrast. Colours are parsed from computed styles ("rgb(r, g, b)" / "rgba(r, g, b, a)").
function parse(c) {
  const m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter((x) => x).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
}
function channel(v) {
  const s = v / 255;
  return s <= 0.04045 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
}
function luminance(c) {
  return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
}
function over(top, bottom) {
  // Alpha-composites `top` over an opaque `bottom`.
  const a = top.a;
  return {
    r: top.r * a + bottom.r * (1 - a),
    g: top.g * a + bottom.g * (1 - a),
    b: top.b * a + bottom.b * (1 - a),
    a: 1,
  };
}
// The opaque colour behind `el`: its own and its ancestors' backgrounds stacked on white (the
// canvas). A background image makes the answer unknown (null): such text is not judged.
function background(el) {
  const layers = [];
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (s.backgroundImage && s.backgroundImage !== "none") return null;
    const c = parse(s.backgroundColor);
    if (c && c.a > 0) {
      layers.push(c);
      if (c.a >= 1) break;
    }
  }
  let bg = { r: 255, g: 255, b: 255, a: 1 };
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  return bg;
}
function ratio(a, b) {
  const la = luminance(a);
  const lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}
const judged = new Set();
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!n.textContent.trim()) continue;
  const el = n.parentElement;
  if (!el || judged.has(el)) continue;
  judged.add(el);
  if (!visible(el)) continue;
  if (el.closest("[aria-hidden=true]")) continue;
  // WCAG exempts inactive controls.
  if (el.closest("button:disabled, input:disabled, select:disabled, textarea:disabled")) continue;
  const s = getComputedStyle(el);
  if (parseFloat(s.opacity) === 0) continue;
  const fg = parse(s.color);
  const bg = background(el);
  if (!fg || !bg) continue;
  const r = ratio(fg.a < 1 ? over(fg, bg) : fg, bg);
  if (r < 4.5) {
    findings.push("contrast " + r.toFixed(2) + ":1 < 4.5:1 (" + s.color + " on rgb(" +
      Math.round(bg.r) + ", " + Math.round(bg.g) + ", " + Math.round(bg.b) + ")): " + describe(el));
  }
}

return findings;
