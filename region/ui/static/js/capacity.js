// Capacity figures of a VM host, from its read object (vm-hosts/) and op=resources, with the
// overcommit folded in: virtual total = host total × ratio (hugepages are never overcommitted).
import { get } from "./api.js";
import { h, meter, mib, round1, bytes } from "./ui.js";

export function hugepages(resources) {
  let total = 0, used = 0;
  for (const node of (resources && resources.numa) || [])
    for (const hp of node.hugepages || []) { total += hp.page_size * hp.total; used += hp.allocated; }
  return { total, used }; // bytes
}

export function figures(host, resources) {
  const hp = hugepages(resources);
  const generalHost = host.total.memory - hp.total / 2 ** 20; // MiB
  const hpUsedMiB = hp.used / 2 ** 20;
  return {
    cpu: { used: host.used.cores, host: host.total.cores, ratio: host.cpu_over_commit_ratio,
           total: round1(host.total.cores * host.cpu_over_commit_ratio) },
    memory: { used: host.used.memory - hpUsedMiB, host: generalHost, ratio: host.memory_over_commit_ratio,
              total: Math.round(generalHost * host.memory_over_commit_ratio) },
    hugepages: { used: hpUsedMiB, total: hp.total / 2 ** 20 },
    storage: { used: host.used.local_storage, total: host.total.local_storage },
  };
}

const overcommit = (f, unit) => (f.ratio !== 1 ? `${f.host}${unit} host × ${f.ratio} overcommit = ${f.total}${unit}` : "");

export function meters(host, resources) {
  const f = figures(host, resources);
  return {
    cpu: meter({ label: "CPU cores", used: f.cpu.used, total: f.cpu.total, format: (x) => `${round1(x)}`,
                 unit: "cores", detail: overcommit(f.cpu, " cores") }),
    memory: meter({ label: "RAM", used: f.memory.used, total: f.memory.total, format: mib,
                    detail: overcommit({ ...f.memory, host: mib(f.memory.host), total: mib(f.memory.total) }, "") }),
    hugepages: f.hugepages.total > 0
      ? meter({ label: "Hugepages", used: f.hugepages.used, total: f.hugepages.total, format: mib })
      : h("div", { class: "caption" }, "Hugepages: none reserved"),
    storage: meter({ label: "Storage", used: f.storage.used, total: f.storage.total, format: bytes }),
  };
}

// op=resources for every ready host, in parallel (failures leave that host without NUMA figures).
export async function resourcesOf(hosts) {
  const out = {};
  await Promise.all(hosts.filter((x) => x.state === "ready").map(async (x) => {
    try { out[x.id] = await get(`vm-hosts/${x.id}/?op=resources`); } catch (e) { out[x.id] = null; }
  }));
  return out;
}
