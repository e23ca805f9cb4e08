// DOM helpers: elements are built with h() (text is never parsed as HTML), capacity meters in
// one visual language (this project / others / free), and number formatting.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const round1 = (x) => Math.round(x * 10) / 10;
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${round1(n)} ${units[i]}`;
}
export const mib = (n) => bytes(n * 1024 * 1024);

// "0-3, 8" from [0,1,2,3,8]
export function ranges(list) {
  const sorted = [...list].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j;
  }
  return out.join(", ");
}

// [0,1,2,3,8] from "0-3,8"; throws with a message on bad input
export function parseRanges(textValue) {
  const out = [];
  for (const part of textValue.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`"${part}" is not a core number or range like 4-7.`);
    const a = +m[1], b = m[2] === undefined ? a : +m[2];
    if (b < a || b - a > 1024) throw new Error(`"${part}" is not an ascending range.`);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

// A meter: `used` of `total` (after overcommit), with `others` optional; the caption says it in words.
export function meter({ label, used, total, others = 0, unit = "", format = (x) => `${round1(x)}`, detail }) {
  const pct = (x) => (total > 0 ? Math.max(0, Math.min(100, (100 * x) / total)) : 0);
  const over = total > 0 && used + others > total;
  const caption = total > 0 ? `${format(used)} of ${format(total)}${unit ? " " + unit : ""} allocated` : "unknown — refresh the host";
  return h("div", { class: "meter", dataset: { meter: label, used: String(used), total: String(total) } },
    h("div", { class: "bar" + (over ? " over" : ""), role: "meter", "aria-label": label,
               "aria-valuemin": "0", "aria-valuemax": String(total), "aria-valuenow": String(used),
               title: detail || caption },
      h("span", { class: "project", style: `width:${pct(used)}%` }),
      others > 0 ? h("span", { class: "others", style: `width:${pct(others)}%` }) : null),
    h("div", { class: "caption" }, caption, detail ? ` (${detail})` : null));
}

// A button that runs `action`, says how it went in a toast, then redraws the screen (`after`).
export function actionButton(label, action, after) {
  return h("button", { type: "button", onclick: async (e) => {
    e.target.disabled = true;
    try { await action(); toast(`${label}: done.`); } catch (err) { toast(`${label}: ${err.message}`); e.target.disabled = false; }
    after();
  } }, label);
}

export function toast(message) {
  const box = document.getElementById("toast");
  const item = h("div", {}, message);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

export function fieldErrors(container, error) {
  // Put each API field error next to its input (data-field), the rest in the summary.
  container.querySelectorAll(".error-text[data-for]").forEach((e) => e.remove());
  const rest = [];
  for (const [field, messages] of Object.entries(error.fields || {})) {
    const input = container.querySelector(`[name="${CSS.escape(field)}"]`);
    const text = [].concat(messages).join(" ");
    if (input) input.after(h("div", { class: "error-text", "data-for": field, role: "alert" }, text));
    else rest.push(`${field}: ${text}`);
  }
  return rest.length ? rest.join("; ") : Object.keys(error.fields || {}).length ? "" : error.message;
}
