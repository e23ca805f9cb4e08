// VM hosts list: LXD and virsh tabs, one row per host with its capacity meters; filter and sort.
import { get, session } from "./api.js";
import { h } from "./ui.js";
import { meters, resourcesOf, figures } from "./capacity.js";
import { changedKey } from "./host_key.js";

const COLUMNS = [
  ["name", "Name / project", (x) => x.name],
  ["address", "Address", (x) => x.power_address || ""],
  ["vms", "VMs / version", (x) => x.vm_count],
  ["tags", "Tags", (x) => x.tags.join(",")],
  ["zone", "Zone / pool", (x) => x.zone.name + "/" + x.pool.name],
  ["cpu", "CPU cores", (x) => x.fig.cpu.used / (x.fig.cpu.total || 1)],
  ["ram", "RAM", (x) => x.fig.memory.used / (x.fig.memory.total || 1)],
  ["storage", "Storage", (x) => x.fig.storage.used / (x.fig.storage.total || 1)],
];

export function stateBadge(host) {
  if (host.state === "ready") return h("span", { class: "badge ready" }, "ready");
  const keyChanged = changedKey(host);
  const label = keyChanged ? "SSH host key changed" : host.state === "awaiting-trust" ? "awaiting trust" : host.state;
  const fix = keyChanged ? `The host now shows ${keyChanged.shown}, not the pinned ${keyChanged.pinned}. If that is expected, `
    + "an administrator accepts the new key on the host's Settings tab." : host.state_message;
  return h("div", {},
    h("span", { class: `badge ${host.state === "awaiting-trust" ? "awaiting-trust" : "error"}` }, label),
    fix ? h("div", { class: "fix" }, fix) : null);
}

export function kvmList(type) {
  const state = { filter: "", sort: "name", dir: 1, hosts: [], resources: {}, grouped: true };
  const body = h("tbody");
  const count = h("p", { class: "muted", id: "host-count" });
  const filter = h("input", { type: "search", id: "host-filter", placeholder: "Filter by name, tag, zone, pool, address",
                              "aria-label": "Filter VM hosts", oninput: () => { state.filter = filter.value.toLowerCase(); draw(); } });
  const head = h("tr", {}, COLUMNS.map(([key, label]) =>
    h("th", { scope: "col", "aria-sort": "none", dataset: { key } },
      h("button", { type: "button", onclick: () => { state.dir = state.sort === key ? -state.dir : 1; state.sort = key; draw(); } }, label))));
  const element = h("section", { "aria-labelledby": "list-title" },
    h("div", { class: "toolbar" }, h("h1", { id: "list-title" }, "VM hosts"), h("span", { class: "spacer" }),
      session.user.is_admin ? h("a", { class: "button", href: `#/kvm/add-${type}` },
        type === "lxd" ? "Add LXD host" : "Add KVM (virsh) host") : null),
    h("nav", { class: "tabs", "aria-label": "Host type" },
      h("a", { href: "#/kvm/lxd", "aria-current": type === "lxd" ? "page" : null }, "LXD"),
      h("a", { href: "#/kvm/virsh", "aria-current": type === "virsh" ? "page" : null }, "Virsh")),
    h("div", { class: "toolbar" }, filter,
      type === "lxd" && h("label", { for: "group-by-server" }, h("input", { type: "checkbox", id: "group-by-server", checked: true,
        onchange: (e) => { state.grouped = e.target.checked; draw(); } }), " Group projects by LXD server"), count),
    h("table", { id: "hosts" }, h("thead", {}, head), body));

  function draw() {
    const rows = state.hosts.filter((x) => x.type === type).filter((x) =>
      !state.filter || [x.name, x.power_address, x.project, x.zone.name, x.pool.name, ...x.tags]
        .some((v) => (v || "").toLowerCase().includes(state.filter)));
    const column = COLUMNS.find(([key]) => key === state.sort);
    const server = (x) => (state.grouped ? x.power_address || "" : "");
    rows.sort((a, b) => { const x = column[2](a), y = column[2](b);
      return server(a).localeCompare(server(b)) || (x > y ? 1 : x < y ? -1 : 0) * state.dir; });
    head.querySelectorAll("th").forEach((th) =>
      th.setAttribute("aria-sort", th.dataset.key === state.sort ? (state.dir > 0 ? "ascending" : "descending") : "none"));
    count.textContent = rows.length ? `${rows.length} ${type === "lxd" ? "LXD" : "virsh"} host(s)` : `No ${type === "lxd" ? "LXD" : "virsh"} hosts available.`;
    body.replaceChildren(...rows.map((x, i) => {
      const m = meters(x, state.resources[x.id]);
      // Grouped, one server's projects read as one block: its address only on the first row.
      const more = state.grouped && i > 0 && server(rows[i - 1]) === server(x) && server(x);
      return h("tr", { dataset: { host: x.name }, class: more ? "same-server" : null },
        h("td", {}, h("a", { href: `#/kvm/${x.id}` }, x.name), h("div", { class: "muted" }, x.project || ""), stateBadge(x)),
        h("td", {}, more ? h("span", { class: "muted" }, "same server") : [x.power_address || "",
          h("div", { class: "muted" }, x.type === "lxd" ? "LXD" : "libvirt")]),
        h("td", {}, String(x.vm_count), h("div", { class: "muted" }, x.version || "")),
        h("td", {}, x.tags.join(", ")),
        h("td", {}, x.zone.name, h("div", { class: "muted" }, x.pool.name)),
        h("td", { class: "cpu" }, m.cpu),
        h("td", { class: "ram" }, m.memory, m.hugepages),
        h("td", { class: "storage" }, m.storage));
    }));
  }

  async function refresh() {
    const hosts = await get("vm-hosts/");
    state.resources = await resourcesOf(hosts);
    const machines = await get("machines/");
    state.hosts = hosts.map((x) => ({ ...x, fig: figures(x, state.resources[x.id]),
      vm_count: machines.filter((m) => m.pod && m.pod.id === x.id && m.project === x.project).length }));
    draw();
  }
  return { element, refresh };
}
