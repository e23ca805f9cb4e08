// One VM host: header, then tabs VMs (with actions and Compose), Resources (NUMA view),
// Storage (pool cards, default) and Settings (overcommit with live virtual capacity, delete).
import { get, post, put, del, session } from "./api.js";
import { actionButton, h, bytes, mib, meter, ranges, toast } from "./ui.js";
import { stateBadge } from "./kvm_list.js";
import { resourcesView } from "./numa.js";
import { settingsForm } from "./host_settings.js";

const TABS = [["vms", "Virtual machines"], ["resources", "Resources"], ["storage", "Storage"], ["settings", "Settings"]];

export function hostDetails(id, tab) {
  const header = h("div");
  const panel = h("div", { role: "tabpanel", id: "tab-panel", "aria-labelledby": `tab-${tab}` });
  const element = h("section", {}, header,
    h("nav", { class: "tabs", "aria-label": "Host sections" }, TABS.map(([key, label]) =>
      h("a", { id: `tab-${key}`, href: `#/kvm/${id}/${key}`, "aria-current": key === tab ? "page" : null }, label))),
    panel);
  let settingsShown = false;

  async function refresh({ live } = {}) {
    const [host, resources, machines] = await Promise.all([
      get(`vm-hosts/${id}/`),
      get(`vm-hosts/${id}/?op=resources`).catch(() => null),
      get("machines/")]);
    const vms = machines.filter((m) => m.pod && m.pod.id === id);
    header.replaceChildren(
      h("div", { class: "toolbar" }, h("h1", {}, host.name), stateBadge(host), h("span", { class: "spacer" }),
        session.user.is_admin ? h("button", { type: "button", onclick: async () => {
          try { await post(`vm-hosts/${id}/`, { op: "refresh" }); toast(`${host.name} refreshed.`); }
          catch (e) { toast(e.message); }
          refresh();
        } }, "Refresh host") : null),
      h("p", { class: "muted" }, (host.type === "virsh" ? "libvirt over SSH" : `LXD project: ${host.project || "—"}`) + ` · Zone: ${host.zone.name} · Pool: ${host.pool.name}`
        + ` · Version: ${host.version || "—"} · VMs: ${vms.length}`
        + (host.last_refresh ? ` · Last refreshed ${new Date(host.last_refresh).toLocaleString()}` : "")));
    if (tab === "vms") panel.replaceChildren(vmsTab(host, resources, vms, refresh));
    else if (tab === "resources") panel.replaceChildren(resourcesView(host, resources, vms, await get(`vm-hosts/${id}/interfaces/`)));
    else if (tab === "storage") panel.replaceChildren(storageTab(host, refresh));
    else if (!settingsShown || !live) { // a live update must not wipe what the user is typing
      panel.replaceChildren(await settingsForm(host, refresh));
      settingsShown = true;
    }
  }
  return { element, refresh };
}

function vmsTab(host, resources, vms, refresh) {
  const byId = Object.fromEntries(((resources && resources.vms) || []).map((v) => [v.system_id, v]));
  const act = (label, fn) => actionButton(label, fn, refresh);
  const rows = vms.map((m) => {
    const r = byId[m.system_id] || {};
    const cores = m.pinned_cores.length ? `${ranges(m.pinned_cores)} (pinned)` : `Any ${m.cpu_count}`;
    return h("tr", { dataset: { vm: m.hostname } },
      h("td", {}, m.hostname, h("div", { class: "muted" }, m.instance_type === "container" ? "container" : "VM")),
      h("td", {}, m.status_name, h("div", { class: "muted" }, `power ${m.power_state}`)),
      h("td", {}, cores), h("td", {}, mib(m.memory), m.hugepages_backed ? h("div", { class: "muted" }, "hugepages") : null),
      h("td", {}, bytes(m.storage * 1e6)),
      h("td", {}, (r.numa_nodes || m.numa_nodes).join(", ") || "—"),
      h("td", {}, m.ip_addresses.join(", ") || "—"),
      h("td", {}, session.user.is_admin ? [
        m.power_state === "on"
          ? act("Power off", () => post(`machines/${m.system_id}/`, { op: "power_off" }))
          : act("Power on", () => post(`machines/${m.system_id}/`, { op: "power_on" })), " ",
        h("button", { type: "button", class: "danger", onclick: async (e) => {
          if (!confirm(`Delete ${m.hostname}? The VM and its disks are deleted on the host.`)) return;
          e.target.disabled = true;
          try { await del(`machines/${m.system_id}/`); toast(`${m.hostname} deleted.`); } catch (err) { toast(err.message); }
          refresh();
        } }, "Delete")] : null));
  });
  return h("div", {},
    h("div", { class: "toolbar" }, h("h2", {}, host.type === "virsh" ? "VMs on this host" : `VMs in project ${host.project || ""}`), h("span", { class: "spacer" }),
      session.user.is_admin && host.state === "ready" ? h("a", { class: "button", href: `#/kvm/${host.id}/compose` }, "Compose VM") : null),
    h("table", { id: "vms" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Cores", "RAM", "Storage", "NUMA node(s)", "IPs", "Actions"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "8" }, "No VMs on this host yet.")))));
}

function storageTab(host, refresh) {
  const pools = [...host.storage_pools].sort((a, b) => (b.default - a.default) || a.name.localeCompare(b.name));
  return h("div", {}, h("h2", {}, "Storage pools (default first)"),
    h("div", { class: "cards" }, pools.map((p) => h("div", { class: "card", dataset: { pool: p.name } },
      h("h3", {}, p.name, p.default ? h("span", { class: "badge ready" }, " default") : null),
      h("div", { class: "muted" }, `${p.type} · ${p.path || "—"}`),
      meter({ label: `Pool ${p.name}`, used: p.used, total: p.total, format: bytes }),
      h("div", { class: "caption" }, `${host.type === "virsh" ? "libvirt" : "LXD"} reports ${bytes(p.lxd_used)} used on its filesystem.`),
      session.user.is_admin && !p.default ? h("button", { type: "button", onclick: async () => {
        try { await put(`vm-hosts/${host.id}/`, { default_storage_pool: p.name }); toast(`${p.name} is now the default pool.`); }
        catch (e) { toast(e.message); }
        refresh();
      } }, "Set as default") : null))));
}
