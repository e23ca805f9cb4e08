// A virsh host's pinned SSH host key: shown on Settings, and when the host presents another key
// (the host is in error with that reason) an admin accepts the new one after confirming it.
import { post, session } from "./api.js";
import { h, toast } from "./ui.js";

// The fingerprint the host shows now, from the region's reason (rack/drivers/virsh_conn.py).
const CHANGED = /SSH host key of \S+ changed: pinned (SHA256:[A-Za-z0-9+/]{43}), the host now shows (SHA256:[A-Za-z0-9+/]{43})/;

export function changedKey(host) {
  const m = host.type === "virsh" && host.state === "error" && CHANGED.exec(host.state_message || "");
  return m ? { pinned: m[1], shown: m[2] } : null;
}

export function hostKeyCard(host, refresh) {
  const change = changedKey(host);
  return h("div", { class: "card", id: "host-key" }, h("h2", {}, "SSH host key"),
    h("p", {}, "Pinned: ", h("code", { id: "pinned-key" }, host.server_fingerprint || "—")),
    change ? [
      h("p", { class: "error-text", role: "alert" }, "The host now shows another key: ", h("code", { id: "shown-key" }, change.shown),
        ". Accept it only if the host was reinstalled or its keys regenerated on purpose; otherwise something is "
        + "intercepting the connection."),
      session.user.is_admin ? h("button", { type: "button", class: "danger", onclick: async (e) => {
        if (!confirm(`Accept the SSH host key ${change.shown} for ${host.name}? Compare it with ssh-keygen -lf on the host.`)) return;
        e.target.disabled = true;
        // The region pins this key only if the host still presents it, before the password is sent.
        try { await post(`vm-hosts/${host.id}/`, { op: "trust_server", fingerprint: change.shown }); toast(`New SSH host key of ${host.name} accepted.`); }
        catch (err) { toast(`Accepting the key failed: ${err.message}`); e.target.disabled = false; }
        refresh();
      } }, "Accept the new key") : null] : null);
}
