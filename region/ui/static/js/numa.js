// Resources tab: totals, and a NUMA view (remembered per host) with per-node core grids,
// memory and hugepage meters, the VMs on each node and the host NICs with their VFs and networks.
import { h, mib, meter, ranges, round1 } from "./ui.js";
import { meters } from "./capacity.js";

export function resourcesView(host, resources, vms, interfaces) {
  if (!resources) return h("p", {}, "This host has reported no resources yet (it is not ready).");
  const key = `vmyard.numaView.${host.id}`;
  const body = h("div");
  const toggle = h("input", { type: "checkbox", id: "numa-toggle", role: "switch", checked: localStorage.getItem(key) === "1",
    onchange: () => { localStorage.setItem(key, toggle.checked ? "1" : "0"); draw(); } });
  const m = meters(host, resources);
  const nets = Object.fromEntries(interfaces.map((i) => [i.name, i]));
  function draw() {
    body.replaceChildren(toggle.checked ? numaCards(resources, vms, nets) : totals(m, resources, nets));
  }
  draw();
  return h("div", {}, h("div", { class: "toolbar" }, h("h2", {}, "Resources"), h("span", { class: "spacer" }),
    h("label", { for: "numa-toggle" }, toggle, " View by NUMA node")), body);
}

function totals(m, resources, nets) {
  return h("div", { class: "cards" },
    h("div", { class: "card" }, h("h3", {}, "CPU cores"), m.cpu),
    h("div", { class: "card" }, h("h3", {}, "RAM"), m.memory, m.hugepages ? [h("h3", {}, "Hugepages"), m.hugepages] : null),
    h("div", { class: "card" }, h("h3", {}, "Storage"), m.storage),
    h("div", { class: "card wide" }, h("h3", {}, "Interfaces"), nicTable(resources.interfaces, nets)));
}

function nicTable(nics, nets) {
  if (!nics.length) return h("p", { class: "muted" }, "No interfaces.");
  return h("table", { class: "nics" }, h("thead", {}, h("tr", {}, ["Interface", "NUMA node", "SR-IOV VFs used / total", "Subnet", "Space"]
    .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, nics.map((n) => {
      const net = nets[n.name] || {};
      const vf = n.virtual_functions;
      return h("tr", { dataset: { nic: n.name } }, h("td", {}, n.name), h("td", {}, n.numa_node ?? "—"),
        h("td", {}, vf.total ? `${vf.allocated} / ${vf.total}` : "—"),
        h("td", {}, (net.subnets || []).map((s) => s.cidr).join(", ") || "—"), h("td", {}, net.space || "—"));
    })));
}

function numaCards(resources, vms, nets) {
  const byId = Object.fromEntries(vms.map((v) => [v.system_id, v]));
  return h("div", { class: "cards", id: "numa" }, resources.numa.map((node) => {
    const pinned = new Set(node.cores.pinned);
    const unpinned = node.cores.ids.filter((c) => !pinned.has(c));
    const sharedUse = node.cores.allocated - pinned.size; // cores given to unpinned VMs on this node
    const grid = h("div", { class: "cores", role: "list", "aria-label": `Cores of NUMA node ${node.index}` },
      node.cores.ids.map((c, i) => {
        const kind = pinned.has(c) ? "pinned" : unpinned.indexOf(c) < sharedUse ? "allocated" : "free";
        return h("div", { class: `core ${kind}`, role: "listitem", title: `core ${c}: ${kind}`, "aria-label": `core ${c} ${kind}` }, String(c));
      }));
    const general = node.memory.general;
    return h("div", { class: "card" + (resources.numa.length <= 2 ? " wide" : ""), dataset: { numa: String(node.index) } },
      h("h3", {}, `NUMA node ${node.index}`),
      h("div", {}, "Cores ", ["pinned", "allocated", "free"].map((k) => h("span", { class: "caption" }, " ", h("span", { class: `legend core ${k}` }), ` ${k}`))),
      grid,
      h("div", { class: "caption" }, `Pinned: ${ranges(node.cores.pinned) || "none"} · allocated ${round1(node.cores.allocated)} of ${node.cores.total}`
        + (node.cores.over_commit_ratio !== 1 ? ` × ${node.cores.over_commit_ratio}` : "")),
      h("div", {}, "Memory"),
      meter({ label: `NUMA ${node.index} memory`, used: general.allocated, total: general.allocated + Math.max(0, general.free), format: mib }),
      node.hugepages.map((hp) => [h("div", {}, `Hugepages (${mib(hp.page_size / 2 ** 20)} pages)`), hp.total
        ? meter({ label: `NUMA ${node.index} hugepages`, used: hp.allocated / 2 ** 20, total: hp.page_size * hp.total / 2 ** 20, format: mib })
        : h("div", { class: "caption" }, "none reserved")]),
      h("h3", {}, `VMs on this node: ${node.vms.length}`),
      h("ul", { class: "numa-vms" }, node.vms.map((v) => {
        const vm = byId[v.system_id];
        const span = vm && vm.numa_nodes.length > 1;
        const misplaced = vm && vm.numa_alignment && vm.numa_alignment.aligned === false;
        return h("li", { dataset: { vm: v.hostname } }, v.hostname,
          v.pinned_cores.length ? ` (cores ${ranges(v.pinned_cores)})` : "",
          span ? h("span", { class: "badge error" }, ` spans nodes ${vm.numa_nodes.join(", ")}`) : null,
          misplaced ? h("div", { class: "warn" }, "A NIC of this VM is on another NUMA node: "
            + vm.numa_alignment.nics.filter((n) => n.aligned === false).map((n) => `${n.name} → ${n.host_interface} (node ${n.numa_node})`).join(", ")) : null);
      })),
      h("h3", {}, "Interfaces"), nicTable(node.interfaces, nets));
  }));
}
