// Machines: status, owner, host, type and IPs; Deploy (allocate, then deploy with an image) with
// the progress Deploying → Deployed / Failed (with the reason), and Release.
import { get, post, session } from "./api.js";
import { actionButton, h } from "./ui.js";

export function machinesList() {
  const body = h("tbody");
  const images = h("select", { id: "deploy-image" });
  const hint = document.createTextNode("");
  const element = h("section", { "aria-labelledby": "machines-title" },
    h("div", { class: "toolbar" }, h("h1", { id: "machines-title" }, "Machines"), h("span", { class: "spacer" }),
      h("span", { class: "muted", id: "deploy-hint" }, hint), h("label", { for: "deploy-image" }, "Image for Deploy:"), images),
    h("table", { id: "machines" }, h("thead", {}, h("tr", {}, ["Name", "Status", "Owner", "VM host", "Type", "IPs", "Actions"]
      .map((c) => h("th", { scope: "col" }, c)))), body));

  const act = (label, fn) => actionButton(label, fn, refresh);

  async function deploy(m) {
    if (m.status_name !== "Allocated") await post("machines/", { op: "allocate", system_id: m.system_id });
    await post(`machines/${m.system_id}/`, { op: "deploy", distro_series: images.value });
  }

  async function refresh() {
    const [machines, resources] = await Promise.all([get("machines/"), get("boot-resources/")]);
    const chosen = images.value;
    const usable = resources.filter((r) => r.state === "complete" || Object.values(r.sets).some((set) => set.complete));
    images.replaceChildren(...usable.map((r) => h("option", { value: r.name, selected: r.name === chosen }, `${r.name} (${r.architecture})`)));
    hint.textContent = usable.length ? "" : "No images yet: upload one under Images to deploy.";
    body.replaceChildren(...machines.map((m) => h("tr", { dataset: { machine: m.hostname } },
      h("td", {}, m.hostname),
      h("td", { class: "status" }, m.status_name, m.status_message ? h("div", { class: "muted" }, m.status_message) : null),
      h("td", {}, m.owner || "—"),
      h("td", {}, m.pod ? h("a", { href: `#/kvm/${m.pod.id}` }, m.pod.name) : "—"),
      h("td", {}, m.instance_type === "container" ? "container" : "VM"),
      h("td", {}, m.ip_addresses.join(", ") || "—"),
      h("td", {}, ["Ready", "Allocated"].includes(m.status_name)
          ? (images.value ? act("Deploy", () => deploy(m))
                          : h("button", { type: "button", disabled: true, title: "Upload an image under Images first" }, "Deploy"))
          : null,
        ["Allocated", "Deployed", "Failed deployment"].includes(m.status_name) && (session.user.is_admin || m.owner === session.user.username)
          ? act("Release", () => post(`machines/${m.system_id}/`, { op: "release" })) : null))));
    if (!machines.length) body.append(h("tr", {}, h("td", { colspan: "7" }, "No machines yet: compose one on a VM host.")));
  }
  return { element, refresh };
}
