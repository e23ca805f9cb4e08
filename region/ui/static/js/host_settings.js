// Settings tab: how the host is reached, where it belongs, overcommit (slider and number, 0-10
// step 0.1) with the virtual capacity it gives, default storage pool, and removing the host.
import { get, put, del, session } from "./api.js";
import { h, mib, round1, toast, fieldErrors } from "./ui.js";
import { hostKeyCard } from "./host_key.js";

function ratioField(name, label, value, capacity) {
  const number = h("input", { type: "number", id: `${name}-number`, name, min: "0", max: "10", step: "0.1", value: String(value),
                              "aria-describedby": `${name}-result` });
  const slider = h("input", { type: "range", id: `${name}-slider`, min: "0", max: "10", step: "0.1", value: String(value),
                              "aria-label": `${label} slider` });
  const result = h("span", { id: `${name}-result`, class: "caption", "aria-live": "polite" });
  const show = () => { result.textContent = capacity(+number.value); };
  slider.addEventListener("input", () => { number.value = slider.value; show(); });
  number.addEventListener("input", () => { slider.value = number.value; show(); });
  show();
  return [h("label", { for: `${name}-number` }, label), h("div", { class: "slider" }, slider, number, result)];
}

export async function settingsForm(host, refresh) {
  const [zones, pools] = await Promise.all([get("zones/"), get("resourcepools/")]);
  const admin = session.user.is_admin;
  const select = (name, label, items, current) => [h("label", { for: `set-${name}` }, label),
    h("select", { id: `set-${name}`, name }, items.map((i) => h("option", { value: i, selected: i === current }, i)))];
  const form = h("form", { class: "stack card", id: "host-settings", onsubmit: save },
    h("h2", {}, "VM host configuration"),
    h("label", { for: "set-address" }, "Address"),
    h("input", { type: "text", id: "set-address", name: "power_address", value: host.power_address || "" }),
    h("label", { for: "set-password" }, host.type === "virsh" ? "New SSH password (optional, stored encrypted, never shown)"
      : "Trust password or token (optional, used once, never shown)"),
    h("input", { type: "password", id: "set-password", name: "password", autocomplete: "new-password" }),
    select("zone", "Zone", zones.map((z) => z.name), host.zone.name),
    select("pool", "Resource pool", pools.map((p) => p.name), host.pool.name),
    h("label", { for: "set-tags" }, "Tags (comma-separated)"),
    h("input", { type: "text", id: "set-tags", name: "tags", value: host.tags.join(", ") }),
    ratioField("cpu_over_commit_ratio", "CPU overcommit", host.cpu_over_commit_ratio,
      (r) => `${host.total.cores} cores × ${r} = ${round1(host.total.cores * r)} virtual cores`),
    ratioField("memory_over_commit_ratio", "Memory overcommit", host.memory_over_commit_ratio,
      (r) => `${mib(host.total.memory)} × ${r} = ${mib(host.total.memory * r)} virtual RAM (hugepages are never overcommitted)`),
    select("default_storage_pool", "Default storage pool", host.storage_pools.map((p) => p.name), host.default_storage_pool),
    h("p", { class: "error-text", id: "settings-error", role: "alert" }),
    admin ? h("button", { type: "submit", class: "primary" }, "Save changes") : h("p", { class: "muted" }, "Only administrators change hosts."));

  async function save(e) {
    e.preventDefault();
    const data = {};
    const was = { power_address: host.power_address || "", zone: host.zone.name, pool: host.pool.name, tags: host.tags.join(", "),
                  cpu_over_commit_ratio: String(host.cpu_over_commit_ratio), memory_over_commit_ratio: String(host.memory_over_commit_ratio),
                  default_storage_pool: host.default_storage_pool || "", password: "" };
    for (const [k, v] of Object.entries(was)) if (form[k] && form[k].value !== v) data[k] = form[k].value;
    const error = form.querySelector("#settings-error");
    error.textContent = "";
    if (!Object.keys(data).length) { error.textContent = "Nothing changed."; return; }
    try {
      await put(`vm-hosts/${host.id}/`, data);
      toast("Settings saved.");
      refresh();
    } catch (err) { error.textContent = fieldErrors(form, err); }
  }

  const decompose = h("input", { type: "checkbox", id: "decompose" });
  const danger = h("div", { class: "card", id: "danger-zone" }, h("h2", {}, "Danger zone"),
    h("p", {}, "Removing the VM host forgets it and its machine records; its VMs stay "
      + (host.type === "virsh" ? "defined in libvirt" : "in the LXD project") + " unless you tick the box."),
    h("label", { for: "decompose" }, decompose, ` Also delete every VM in ${host.name} with its storage`),
    h("p", {}, h("button", { type: "button", class: "danger", disabled: !admin, onclick: async () => {
      if (!confirm(`Remove VM host ${host.name}?`)) return;
      try {
        await del(`vm-hosts/${host.id}/`, { decompose: decompose.checked ? "true" : "false" });
        toast(`${host.name} removed.`);
        location.hash = `#/kvm/${host.type}`;
      } catch (err) { toast(err.message); }
    } }, "Remove VM host")));
  return h("div", {}, host.type === "virsh" ? hostKeyCard(host, refresh) : null, form, danger);
}
