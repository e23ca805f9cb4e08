// Add LXD host: 1 details → 2 trust (certificate with copy buttons, or a trust password) →
// 3 connected.  The wizard's state lives in localStorage, so leaving and coming back resumes it
// (a host awaiting trust is already stored by the region and keeps being polled).
import { get, post, del, text } from "./api.js";
import { h, toast, fieldErrors } from "./ui.js";

const KEY = "vmyard.addLxd";
const POLL_MS = 3000;
const load = () => { try { return JSON.parse(localStorage.getItem(KEY)) || { step: 1 }; } catch { return { step: 1 }; } };
const store = (s) => localStorage.setItem(KEY, JSON.stringify(s));

function copyButton(label, getText) {
  return h("button", { type: "button", onclick: async (e) => {
    await navigator.clipboard.writeText(getText()).then(() => toast(`${label} copied.`), () => toast("Select the text and copy it."));
  } }, `Copy ${label}`);
}

export function addLxdWizard() {
  let state = load();
  let timer = null;
  const element = h("section", { "aria-labelledby": "wizard-title" });

  function steps() {
    return h("ol", { class: "stepper" }, ["Details", "Trust", "Connected"].map((label, i) =>
      h("li", { "aria-current": state.step === i + 1 ? "step" : null }, `${i + 1}. ${label}`)));
  }

  async function detailsStep() {
    const [zones, pools, hosts] = await Promise.all([get("zones/"), get("resourcepools/"), get("vm-hosts/")]);
    const v = state.form || {};
    const known = [...new Set(hosts.filter((x) => x.type === "lxd" && x.power_address).map((x) => x.power_address))];
    const input = (name, label, attrs = {}) => [h("label", { for: `add-${name}` }, label),
      h("input", { type: "text", id: `add-${name}`, name, value: v[name] || "", ...attrs })];
    const select = (name, label, items) => [h("label", { for: `add-${name}` }, label),
      h("select", { id: `add-${name}`, name }, items.map((i) => h("option", { value: i, selected: i === v[name] }, i)))];
    const error = h("p", { class: "error-text", role: "alert", id: "add-error" });
    const passwordBox = h("div", { hidden: v.auth !== "password" },
      h("label", { for: "add-password" }, "Trust password or token (used once, never stored or shown again)"),
      h("input", { type: "password", id: "add-password", name: "password", autocomplete: "off" }));
    const form = h("form", { class: "stack card", id: "add-lxd", onsubmit: submit },
      input("name", "Name", { required: true }),
      input("power_address", "LXD address (host:8443)", { required: true, list: "known-addresses" }),
      h("datalist", { id: "known-addresses" }, known.map((a) => h("option", { value: a }))),
      select("zone", "Zone", zones.map((z) => z.name)),
      select("pool", "Resource pool", pools.map((p) => p.name)),
      h("fieldset", {}, h("legend", {}, "LXD project"),
        h("label", {}, h("input", { type: "radio", name: "project_mode", value: "new", checked: v.project_mode !== "existing" }), " New project"),
        h("label", {}, h("input", { type: "radio", name: "project_mode", value: "existing", checked: v.project_mode === "existing" }),
          " Existing project (its VMs are imported as they are, nothing is recommissioned)"),
        input("project", "Project name", { required: true, pattern: "[A-Za-z0-9_-]{1,63}", title: "1-63 letters, digits, - or _",
                                           list: "known-projects" }),
        // Projects other VM hosts use on known servers; LXD lists the rest only once it trusts us.
        h("datalist", { id: "known-projects" }, [...new Set(hosts.map((x) => x.project).filter(Boolean))].map((p) => h("option", { value: p })))),
      h("fieldset", { onchange: () => { passwordBox.hidden = !form.querySelector("#auth-password").checked; } },
        h("legend", {}, "Authentication"),
        h("label", {}, h("input", { type: "radio", name: "auth", id: "auth-certificate", value: "certificate", checked: v.auth !== "password" }),
          " Generate a certificate and add it to LXD's trust store"),
        h("label", {}, h("input", { type: "radio", name: "auth", id: "auth-password", value: "password", checked: v.auth === "password" }),
          " Use a trust password or token"),
        passwordBox),
      error,
      h("p", {}, h("button", { type: "submit", class: "primary" }, "Next")));
    form.addEventListener("input", () => { state.form = Object.fromEntries(new FormData(form)); delete state.form.password; store(state); });

    async function submit(e) {
      e.preventDefault();
      error.textContent = "";
      const data = Object.fromEntries(new FormData(form));
      state.form = { ...data }; delete state.form.password; store(state);
      try {
        const host = await post("vm-hosts/", { type: "lxd", name: data.name, power_address: data.power_address,
          zone: data.zone, pool: data.pool, project: data.project, password: data.auth === "password" ? data.password : undefined });
        state = { ...state, host_id: host.id, host_name: host.name, step: host.state === "ready" ? 3 : 2 };
        store(state);
        draw();
      } catch (err) { error.textContent = fieldErrors(form, err) || "Fix the fields marked above."; }
    }
    return form;
  }

  async function trustStep() {
    const cert = await text(`/MAAS/vmhost-certificate/${encodeURIComponent(state.host_name)}`);
    const url = `${location.origin}/MAAS/vmhost-certificate/${encodeURIComponent(state.host_name)}`;
    const modern = `curl -s ${url} | lxc config trust add -`;
    const lxd50 = `curl -s ${url} -o vmyard.crt && lxc config trust add vmyard.crt && rm vmyard.crt`;
    const status = h("p", { id: "trust-status", role: "status", "aria-live": "polite" }, "Waiting for LXD to trust the certificate…");
    poll(status);
    return h("div", { class: "card" },
      h("p", {}, `VM host ${state.host_name} is stored and awaiting trust. Add its certificate to LXD's trust store on the LXD server:`),
      h("h3", {}, "LXD 5.21 and later"), h("code", { class: "cmd", id: "cmd-modern" }, modern), copyButton("command", () => modern),
      h("h3", {}, "LXD 5.0"), h("code", { class: "cmd", id: "cmd-lxd50" }, lxd50), copyButton("LXD 5.0 command", () => lxd50),
      h("h3", {}, "Certificate"), h("textarea", { class: "pem", readonly: true, "aria-label": "Client certificate", id: "cert-pem" }, cert),
      copyButton("certificate", () => cert),
      status,
      h("p", {}, h("button", { type: "button", onclick: cancel }, "Cancel and remove this host")));
  }

  function poll(status) {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      try {
        const host = await post(`vm-hosts/${state.host_id}/`, { op: "refresh" });
        if (host.state === "ready") { state.step = 3; store(state); draw(); return; }
        status.textContent = `Still waiting (${host.state}): ${host.state_message}`;
      } catch (err) {
        if (err.status === 404) { localStorage.removeItem(KEY); state = { step: 1 }; draw(); return; }
        status.textContent = err.status === 503 ? "Waiting for LXD to trust the certificate… (checked " + new Date().toLocaleTimeString() + ")" : err.message;
      }
      if (element.isConnected) poll(status);
    }, POLL_MS);
  }

  async function cancel() {
    clearTimeout(timer);
    try { await del(`vm-hosts/${state.host_id}/`); } catch (err) { if (err.status !== 404) { toast(err.message); return; } }
    localStorage.removeItem(KEY);
    state = { step: 1, form: state.form };
    draw();
  }

  function doneStep() {
    const id = state.host_id, name = state.host_name;
    localStorage.removeItem(KEY);
    return h("div", { class: "card", id: "add-done" }, h("p", { role: "status" }, `Connected ✓ — LXD trusts vmyard and ${name} is ready.`),
      h("p", {}, h("a", { href: `#/kvm/${id}`, class: "button" }, `Open ${name}`), " ",
        h("a", { href: "#/kvm/lxd" }, "Back to the list")));
  }

  async function draw() {
    const body = state.step === 1 ? await detailsStep() : state.step === 2 ? await trustStep() : doneStep();
    const title = h("h1", { id: "wizard-title", tabindex: "-1" }, "Add LXD host");
    element.replaceChildren(title, steps(), body);
    if (element.isConnected) title.focus(); // a screen reader hears the new step from the top
  }
  return { element, refresh: async ({ live } = {}) => { if (!live) await draw(); }, leave: () => clearTimeout(timer) };
}
