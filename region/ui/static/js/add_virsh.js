// Add KVM (virsh) host: one form.  The address is checked against the region's own rules as it
// is typed; on submit the region logs in over SSH with the password, pins the host key and
// discovers the host, or answers with the reason on the field at fault (nothing is stored then).
import { addressCheck, get, post } from "./api.js";
import { h, toast, fieldErrors } from "./ui.js";

const CHECK_MS = 300;

export function addVirshHost() {
  const element = h("section", { "aria-labelledby": "virsh-title" });

  async function refresh({ live } = {}) {
    if (live && element.firstChild) return; // a live update must not wipe what the user is typing
    const [zones, pools] = await Promise.all([get("zones/"), get("resourcepools/")]);
    element.replaceChildren(build(zones, pools));
  }
  return { element, refresh };
}

function build(zones, pools) {
  const field = (name, label, attrs = {}, help) => [h("label", { for: `virsh-${name}` }, label),
    h("input", { type: "text", id: `virsh-${name}`, name, "aria-describedby": help ? `virsh-${name}-help` : null, ...attrs }),
    help ? h("div", { class: "caption", id: `virsh-${name}-help` }, help) : null];
  const select = (name, label, items) => [h("label", { for: `virsh-${name}` }, label),
    h("select", { id: `virsh-${name}`, name }, items.map((i) => h("option", { value: i }, i)))];
  const error = h("p", { class: "error-text", role: "alert", id: "virsh-error" });
  const submit = h("button", { type: "submit", class: "primary" }, "Add KVM host");
  const form = h("form", { class: "stack card", id: "add-virsh", onsubmit: send },
    field("name", "Name", { required: true }),
    field("power_address", "Address", { required: true, placeholder: "qemu+ssh://user@host/system", autocomplete: "off" },
      "The libvirt URI over SSH; the user needs write access to libvirt's socket (group libvirt)."),
    field("password", "SSH password", { type: "password", required: true, autocomplete: "new-password" },
      "Stored encrypted and sent only to the rack that reaches the host; never shown again."),
    select("zone", "Zone", zones.map((z) => z.name)),
    select("pool", "Resource pool", pools.map((p) => p.name)),
    field("tags", "Tags (comma-separated, optional)"),
    error, h("p", {}, submit));

  // As the address is typed, the region's rules say what is wrong with it, on the field.
  let timer = null, asked = 0;
  form.power_address.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked, address = form.power_address.value;
      let problem = null;
      if (address.trim()) {
        try { await addressCheck("virsh", address); } catch (err) { problem = err; }
      }
      if (mine !== asked) return;
      form.querySelectorAll('.error-text[data-for="power_address"]').forEach((el) => el.remove());
      const why = problem && [].concat(problem.fields.power_address || problem.message).join(" ");
      if (why) form.power_address.after(h("div", { class: "error-text", "data-for": "power_address", role: "alert" }, why));
      form.power_address.setAttribute("aria-invalid", why ? "true" : "false");
    }, CHECK_MS);
  });

  async function send(e) {
    e.preventDefault();
    clearTimeout(timer);
    error.textContent = "";
    const data = Object.fromEntries(new FormData(form));
    submit.disabled = true;
    submit.textContent = "Connecting…";
    try {
      const host = await post("vm-hosts/", { type: "virsh", name: data.name, power_address: data.power_address,
        power_pass: data.password, zone: data.zone, pool: data.pool, tags: data.tags || undefined });
      toast(`${host.name} added; its SSH host key ${host.server_fingerprint} is pinned.`);
      location.hash = `#/kvm/${host.id}/settings`;
    } catch (err) {
      // The region names power_pass or password for the SSH password; both belong to one field.
      const fields = { ...err.fields };
      if (fields.power_pass) { fields.password = fields.power_pass; delete fields.power_pass; }
      error.textContent = fieldErrors(form, { ...err, message: err.message, fields }) || "Fix the fields marked above.";
    } finally { submit.disabled = false; submit.textContent = "Add KVM host"; }
  }

  return h("div", {}, h("h1", { id: "virsh-title" }, "Add KVM (virsh) host"),
    h("p", { class: "muted" }, "vmyard connects over SSH, pins the host's SSH key on this first connection and discovers its "
      + "CPU, memory, storage pools and networks."), form);
}
