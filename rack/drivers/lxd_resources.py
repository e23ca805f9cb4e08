"""Parsing LXD's `GET /1.0/resources`: NUMA nodes (threads, memory, hugepages)
and network cards.  Pure functions over the decoded JSON."""

from __future__ import annotations

from common.models import HostInterface, HugepageInfo, NumaNode


def parse_cpu_memory(res: dict) -> tuple[list[NumaNode], int, int, int]:
    """NUMA nodes (thread ids, memory, hugepages), total threads, speed (MHz), memory."""
    cpu = res.get("cpu") or {}
    mem = res.get("memory") or {}
    cores: dict[int, list[int]] = {}
    speed = 0
    for sock in cpu.get("sockets") or []:
        speed = max(speed, int(sock.get("frequency_turbo") or sock.get("frequency") or 0))
        for core in sock.get("cores") or []:
            for thread in core.get("threads") or []:
                if thread.get("online", True):
                    cores.setdefault(int(thread.get("numa_node") or 0), []).append(int(thread["id"]))
    page_size = int(mem.get("hugepages_size") or 0)
    memory_by_node: dict[int, tuple[int, list[HugepageInfo]]] = {}
    for node in mem.get("nodes") or []:
        hp = []
        if page_size:
            total = int(node.get("hugepages_total") or 0)
            hp.append(HugepageInfo(page_size=page_size, total=total,
                                   free=max(total - int(node.get("hugepages_used") or 0), 0)))
        memory_by_node[int(node.get("numa_node") or 0)] = (int(node.get("total") or 0), hp)
    nodes = [
        NumaNode(index=i, cores=sorted(cores.get(i, [])),
                 memory=memory_by_node.get(i, (0, []))[0],
                 hugepages=memory_by_node.get(i, (0, []))[1])
        for i in sorted(set(cores) | set(memory_by_node))
    ]
    total_threads = int(cpu.get("total") or sum(len(c) for c in cores.values()))
    return nodes, total_threads, speed, int(mem.get("total") or 0)


def parse_interfaces(res: dict) -> list[HostInterface]:
    out = []
    for card in (res.get("network") or {}).get("cards") or []:
        sriov = card.get("sriov") or {}
        numa = card.get("numa_node")
        for port in card.get("ports") or []:
            out.append(HostInterface(
                name=port.get("id", ""),
                type="physical",
                mac=port.get("address", ""),
                numa_node=int(numa) if numa is not None else None,
                sriov_max_vfs=int(sriov.get("maximum_vfs") or 0),
                sriov_current_vfs=int(sriov.get("current_vfs") or 0),
                link_speed=int(port["link_speed"]) if port.get("link_speed") else None,
            ))
    return out


# LXD's /1.0/networks lists host bridges and bonds (managed or not), which
# /1.0/resources does not; VMs attach to bridges, so they are host interfaces too.
NETWORK_INTERFACE_TYPES = ("bridge", "bond")


def parse_networks(networks: list[dict], states: dict[str, dict], known: set[str]) -> list[HostInterface]:
    """Bridges and bonds from `GET /1.0/networks?recursion=1` (with each one's /state),
    skipping names already known from the resources."""
    out = []
    for net in networks:
        name, kind = net.get("name", ""), net.get("type", "")
        if kind not in NETWORK_INTERFACE_TYPES or not name or name in known:
            continue
        state = states.get(name) or {}
        out.append(HostInterface(name=name, type=kind, mac=state.get("hwaddr") or ""))
    return out
