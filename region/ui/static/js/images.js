// Images: boot resources with size, state and the VM hosts that hold them; upload in chunks
// through the API's chunked PUT, with a progress bar.
import { get, post, putRaw } from "./api.js";
import { h, bytes, toast, fieldErrors } from "./ui.js";

const CHUNK = 4 * 1024 * 1024;

async function sha256(file) {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function imagesList() {
  const body = h("tbody");
  const progress = h("progress", { class: "progress", id: "upload-progress", max: "100", value: "0", hidden: true, "aria-label": "Upload progress" });
  const status = h("span", { id: "upload-status", role: "status", "aria-live": "polite" });
  const form = h("form", { class: "stack card", id: "upload", onsubmit: upload },
    h("h2", {}, "Upload an image"),
    h("label", { for: "img-name" }, "Name (e.g. custom/bookworm)"), h("input", { type: "text", id: "img-name", name: "name", required: true }),
    h("label", { for: "img-arch" }, "Architecture"), h("input", { type: "text", id: "img-arch", name: "architecture", value: "amd64/generic", required: true }),
    h("label", { for: "img-type" }, "File type"),
    h("select", { id: "img-type", name: "filetype" }, ["tgz", "lxd", "ddraw", "ddgz", "ddxz"].map((t) => h("option", { value: t }, t))),
    h("label", { for: "img-file" }, "File"), h("input", { type: "file", id: "img-file", name: "file", required: true }),
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Upload"), " ", progress, " ", status));
  const element = h("section", { "aria-labelledby": "images-title" }, h("h1", { id: "images-title" }, "Images"),
    h("table", { id: "images" }, h("thead", {}, h("tr", {}, ["Name", "Architecture", "Size", "State", "Held by VM hosts"]
      .map((c) => h("th", { scope: "col" }, c)))), body), form);

  async function upload(e) {
    e.preventDefault();
    const file = form.file.files[0];
    status.textContent = "Hashing…";
    try {
      const made = await post("boot-resources/", { name: form.name.value, architecture: form.architecture.value,
        filetype: form.filetype.value, size: file.size, sha256: await sha256(file) });
      const target = Object.values(Object.values(made.sets)[0].files)[0].upload_uri;
      progress.hidden = false;
      for (let offset = 0; offset < file.size; offset += CHUNK) {
        await putRaw(target, file.slice(offset, offset + CHUNK));
        progress.value = Math.round((100 * Math.min(file.size, offset + CHUNK)) / file.size);
        status.textContent = `${progress.value}%`;
      }
      status.textContent = "Uploaded.";
      toast(`${form.name.value} uploaded.`);
      refresh();
    } catch (err) { status.textContent = fieldErrors(form, err) || "See the fields above."; }
  }

  async function refresh() {
    const [resources, hosts] = await Promise.all([get("boot-resources/"), get("vm-hosts/")]);
    body.replaceChildren(...resources.map((r) => {
      const set = Object.values(r.sets)[0] || {};
      const holders = hosts.flatMap((x) => (x.images || []).filter((i) => i.id === r.id)
        .map((i) => (i.copying != null ? `${x.name} (copying ${i.copying}%)` : x.name)));
      return h("tr", { dataset: { image: r.name } }, h("td", {}, r.name), h("td", {}, r.architecture), h("td", {}, bytes(set.size || 0)),
        h("td", {}, set.complete ? "complete" : `${r.state} ${set.progress ?? 0}%`), h("td", {}, holders.join(", ") || "—"));
    }));
    if (!resources.length) body.append(h("tr", {}, h("td", { colspan: "5" }, "No images yet.")));
  }
  return { element, refresh };
}
