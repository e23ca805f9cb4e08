// Compose a VM or container on one host.  Checks the request against the host's free capacity
// as the user types (cores, pinned cores, RAM, hugepages, space per pool) and, when the region
// still refuses it, shows the region's own explanation next to the button.
import { composeCheck, get, post } from "./api.js";
import { h, bytes, mib, parseRanges, ranges, round1, toast, fieldErrors } from "./ui.js";
import { figures } from "./capacity.js";

const GB = 1e9;

export function composeForm(id) {
  const element = h("section", { "aria-labelledby": "compose-title" });
  let built = false;

  async function refresh() {
    if (built) return; // a live update must not reset the form being filled in
    built = true;
    const [host, resources, interfaces] = await Promise.all([
      get(`vm-hosts/${id}/`), get(`vm-hosts/${id}/?op=resources`), get(`vm-hosts/${id}/interfaces/`)]);
    element.replaceChildren(build(host, resources, interfaces));
  }
  return { element, refresh };
}

function build(host, resources, interfaces) {
  const f = figures(host, resources);
  // What placement itself counts free (every project's VMs, overcommit applied).
  const freeCores = round1(resources.cores.available);
  const freeMemory = resources.numa.reduce((sum, n) => sum + Math.max(0, n.memory.general.free), 0);
  const freeHuge = Math.floor(f.hugepages.total - f.hugepages.used);
  const pinnable = resources.numa.flatMap((n) => n.cores.free);
  const allCores = resources.numa.flatMap((n) => n.cores.ids);
  const pools = [...host.storage_pools].sort((a, b) => (b.default - a.default) || a.name.localeCompare(b.name));
  const subnets = interfaces.flatMap((i) => i.subnets.map((s) => ({ ...s, iface: i.name, space: i.space, vlan: i.vlan })));
  const spaces = [...new Set(interfaces.map((i) => i.space).filter(Boolean))];

  const disks = h("div", { id: "disks" });
  const nics = h("div", { id: "nics" });
  const problems = h("ul", { class: "error-text", id: "compose-problems", role: "alert" });
  const verdict = h("p", { id: "compose-verdict", role: "status", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Compose machine");
  const form = h("form", { class: "stack", id: "compose", oninput: check, onsubmit: send },
    h("div", { class: "card" },
      h("label", { for: "c-hostname" }, "Name (optional)"), h("input", { type: "text", id: "c-hostname", name: "hostname", placeholder: "Optional" }),
      h("label", { for: "c-type" }, "Type"),
      h("select", { id: "c-type", name: "instance_type" }, h("option", { value: "virtual-machine" }, "Virtual machine"),
        host.type === "lxd" ? h("option", { value: "container" }, "Container") : null), // libvirt makes VMs only
      h("fieldset", {}, h("legend", {}, "Cores"),
        h("label", {}, h("input", { type: "radio", name: "core_mode", value: "any", checked: true }), " Any available cores"),
        h("input", { type: "number", id: "c-cores", name: "cores", min: "1", step: "1", value: "1", "aria-label": "Number of cores",
                     "aria-describedby": "c-cores-help" }),
        h("div", { class: "caption", id: "c-cores-help" }, `${freeCores} of ${f.cpu.total} virtual cores free (${f.cpu.host} host cores × ${f.cpu.ratio}).`),
        h("label", {}, h("input", { type: "radio", name: "core_mode", value: "pinned" }), " Pin to specific cores"),
        h("input", { type: "text", id: "c-pinned", name: "pinned_cores", placeholder: "e.g. 0-3,8", "aria-label": "Cores to pin",
                     "aria-describedby": "c-pinned-help" }),
        h("div", { class: "caption", id: "c-pinned-help" }, `Unpinned cores: ${ranges(pinnable) || "none"}.`)),
      h("label", { for: "c-memory" }, "RAM (MiB)"),
      h("input", { type: "number", id: "c-memory", name: "memory", min: "1024", step: "256", value: "2048", "aria-describedby": "c-memory-help" }),
      h("div", { class: "caption", id: "c-memory-help" },
        `${mib(freeMemory)} free of ${mib(f.memory.total)} (${mib(f.memory.host)} host RAM × ${f.memory.ratio}); hugepages free: ${mib(freeHuge)}.`),
      h("label", {}, h("input", { type: "checkbox", id: "c-hugepages", name: "hugepages_backed", disabled: f.hugepages.total === 0 }),
        f.hugepages.total === 0 ? " Back with hugepages (this host has none)" : " Back with hugepages")),
    h("fieldset", {}, h("legend", {}, "Storage"), disks,
      h("button", { type: "button", onclick: () => { addDisk(20); check(); } }, "Add disk")),
    h("fieldset", {}, h("legend", {}, "Interfaces"),
      h("p", { class: "muted" }, host.type === "virsh" ? "None defined: the VM gets no NIC." : "None defined: one NIC made by LXD at compose time."), nics,
      h("button", { type: "button", disabled: !interfaces.length, onclick: () => { addNic(); check(); } }, "Add interface")),
    h("div", { class: "summary" }, problems, verdict, submit));

  function addDisk(size) {
    const n = disks.children.length;
    disks.append(h("div", { class: "row disk", dataset: { disk: String(n) } },
      h("label", { for: `c-disk-size-${n}` }, n === 0 ? "Boot disk size (GB)" : `Disk ${n} size (GB)`),
      h("input", { type: "number", id: `c-disk-size-${n}`, class: "disk-size", min: "1", value: String(size) }),
      h("label", { for: `c-disk-pool-${n}` }, "Pool"),
      h("select", { id: `c-disk-pool-${n}`, class: "disk-pool" }, pools.map((p) =>
        h("option", { value: p.name }, `${p.name}${p.default ? " (default)" : ""} — ${bytes(p.available)} free of ${bytes(p.total)}`))),
      n > 0 ? h("button", { type: "button", onclick: (e) => { e.target.closest(".disk").remove(); check(); } }, "Remove") : null));
  }
  function addNic() {
    const n = nics.children.length;
    const subnetSelect = h("select", { id: `c-nic-subnet-${n}`, class: "nic-subnet" },
      h("option", { value: "" }, "Any"), subnets.map((s) => h("option", { value: s.cidr }, `${s.cidr} (space ${s.space}, VLAN ${s.vlan ? s.vlan.vid : "—"}, on ${s.iface})`)));
    nics.append(h("div", { class: "row nic" },
      h("label", { for: `c-nic-space-${n}` }, `eth${n} space`),
      h("select", { id: `c-nic-space-${n}`, class: "nic-space" }, h("option", { value: "" }, "Any"), spaces.map((s) => h("option", { value: s }, s))),
      h("label", { for: `c-nic-subnet-${n}` }, "Subnet / VLAN"), subnetSelect,
      h("label", { for: `c-nic-ip-${n}` }, "IP (optional)"),
      h("input", { type: "text", id: `c-nic-ip-${n}`, class: "nic-ip", placeholder: "Leave empty to auto-assign" }),
      h("button", { type: "button", onclick: (e) => { e.target.closest(".nic").remove(); check(); } }, "Remove")));
  }
  addDisk(8);

  function request() {
    const pinnedMode = form.core_mode.value === "pinned";
    const storage = [...disks.querySelectorAll(".disk")].map((d, i) =>
      `${i === 0 ? "root" : "disk" + i}:${d.querySelector(".disk-size").value}(${d.querySelector(".disk-pool").value})`).join(",");
    const ifaces = [...nics.querySelectorAll(".nic")].map((row, i) => {
      const parts = [["space", ".nic-space"], ["subnet", ".nic-subnet"], ["ip", ".nic-ip"]]
        .map(([k, sel]) => [k, row.querySelector(sel).value.trim()]).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`);
      return `eth${i}:${parts.join(",")}`;
    }).join(";");
    return { op: "compose", hostname: form.hostname.value || undefined, instance_type: form.instance_type.value,
             cores: pinnedMode ? undefined : form.cores.value, pinned_cores: pinnedMode ? form.pinned_cores.value : undefined,
             memory: form.memory.value, hugepages_backed: form.hugepages_backed.checked ? "true" : undefined,
             storage, interfaces: ifaces || undefined };
  }

  function check() {
    const out = [];
    const memory = +form.memory.value;
    if (form.core_mode.value === "pinned") {
      try {
        const cores = parseRanges(form.pinned_cores.value);
        if (!cores.length) out.push("No cores have been selected to pin.");
        const missing = cores.filter((c) => !allCores.includes(c));
        const taken = cores.filter((c) => allCores.includes(c) && !pinnable.includes(c));
        if (missing.length) out.push(`These cores do not exist on this host: ${ranges(missing)}.`);
        if (taken.length) out.push(`These cores are already pinned by other VMs: ${ranges(taken)}.`);
      } catch (e) { out.push(e.message); }
    } else {
      const cores = +form.cores.value;
      if (!Number.isInteger(cores) || cores < 1) out.push("Cores: enter a whole number of at least 1.");
      else if (cores > freeCores) out.push(`Cores: ${cores} requested but only ${freeCores} free (${f.cpu.host} × ${f.cpu.ratio} − ${f.cpu.used} allocated).`);
    }
    if (!(memory >= 1024)) out.push("RAM: at least 1024 MiB.");
    else if (form.hugepages_backed.checked ? memory > freeHuge : memory > freeMemory)
      out.push(`RAM: ${mib(memory)} requested but only ${mib(form.hugepages_backed.checked ? freeHuge : freeMemory)} ${form.hugepages_backed.checked ? "hugepages" : ""} free.`);
    if (form.instance_type.value === "container" && form.hugepages_backed.checked) out.push("Hugepages back VMs only, not containers.");
    const perPool = {};
    disks.querySelectorAll(".disk").forEach((d) => {
      const size = +d.querySelector(".disk-size").value;
      if (!(size >= 1)) out.push("Each disk needs at least 1 GB.");
      const pool = d.querySelector(".disk-pool").value;
      perPool[pool] = (perPool[pool] || 0) + size * GB;
    });
    for (const [name, want] of Object.entries(perPool)) {
      const pool = pools.find((p) => p.name === name);
      if (pool && want > pool.available) out.push(`Only ${bytes(pool.available)} free in pool ${name}; the disks there ask ${bytes(want)}.`);
    }
    problems.replaceChildren(...out.map((m) => h("li", {}, m)));
    if (out.length) { clearTimeout(askTimer); verdict.textContent = ""; } else askRegion();
    return out;
  }

  // What the form cannot know (names taken, networks, SR-IOV, other regions' reservations) the
  // region answers with a dry run of the compose, shortly after the user stops typing.
  let askTimer = null, asked = 0;
  function askRegion() {
    clearTimeout(askTimer);
    askTimer = setTimeout(async () => {
      const mine = ++asked;
      verdict.textContent = "Checking with the region…";
      try {
        await composeCheck(host.id, request());
        if (mine === asked) verdict.textContent = "Fits on this host ✓";
      } catch (err) {
        if (mine === asked) verdict.textContent = `Does not fit: ${err.message}`;
      }
    }, 400);
  }

  async function send(e) {
    e.preventDefault();
    if (check().length) return; // the problems are listed next to the button
    submit.disabled = true;
    submit.textContent = "Composing…";
    try {
      const made = await post(`vm-hosts/${host.id}/`, request());
      toast(`${form.hostname.value || made.system_id} composed on ${host.name}.`);
      location.hash = `#/kvm/${host.id}/vms`;
    } catch (err) {
      const why = fieldErrors(form, err);
      problems.replaceChildren(h("li", {}, `The region refused it: ${why || "see the fields above."}`));
    } finally { submit.disabled = false; submit.textContent = "Compose machine"; }
  }

  check();
  return h("div", {}, h("h1", { id: "compose-title" }, `Compose on ${host.name}`),
    h("p", { class: "muted" }, h("a", { href: `#/kvm/${host.id}` }, `Back to ${host.name}`)), form);
}
