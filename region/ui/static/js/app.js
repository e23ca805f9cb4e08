// The app: log in, then route #/… to a screen; server-sent events re-render the screen when
// hosts, machines or images change.
import { login, logout, session, whoami, UI } from "./api.js";
import { h } from "./ui.js";
import { kvmList } from "./kvm_list.js";
import { hostDetails } from "./host_details.js";
import { addLxdWizard } from "./wizard.js";
import { addVirshHost } from "./add_virsh.js";
import { composeForm } from "./compose.js";
import { machinesList } from "./machines.js";
import { imagesList } from "./images.js";

const main = document.getElementById("main");
let current = null; // { refresh() } of the screen shown
let events = null;

const routes = [
  [/^#\/kvm\/(lxd|virsh)$/, (m) => kvmList(m[1])],
  [/^#\/kvm\/add-lxd$/, () => addLxdWizard()],
  [/^#\/kvm\/add-virsh$/, () => addVirshHost()],
  [/^#\/kvm\/(\d+)\/compose$/, (m) => composeForm(+m[1])],
  [/^#\/kvm\/(\d+)(?:\/(vms|resources|storage|settings))?$/, (m) => hostDetails(+m[1], m[2] || "vms")],
  [/^#\/machines$/, () => machinesList()],
  [/^#\/images$/, () => imagesList()],
];

async function show() {
  if (!session.user) return showLogin();
  const hash = location.hash || "#/kvm/lxd";
  const found = routes.map(([re, make]) => [re.exec(hash), make]).find(([m]) => m);
  if (!found) { location.hash = "#/kvm/lxd"; return; }
  document.querySelectorAll("#nav a").forEach((a) => {
    if (hash.startsWith("#/" + a.dataset.section)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (current && current.leave) current.leave();
  current = found[1](found[0]);
  main.replaceChildren(current.element);
  main.focus({ preventScroll: true });
  try {
    await current.refresh();
  } catch (e) {
    if (!session.user) return; // the session ended: the login form is shown already
    main.replaceChildren(h("p", { class: "error-text", role: "alert" }, `Could not load this page: ${e.message}`),
      h("p", {}, h("a", { href: "#/kvm/lxd" }, "Back to the VM hosts")));
  }
}

function showLogin(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  if (events) { events.close(); events = null; }
  const error = h("p", { class: "error-text", role: "alert", id: "login-error" }, message || "");
  const form = h("form", { class: "stack card", "aria-labelledby": "login-title", onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      try {
        await login(form.username.value, form.password.value);
        started();
      } catch (err) {
        error.textContent = err.status === 429 ? `Too many failed logins: ${err.message}` : err.message;
      }
    } },
    h("h1", { id: "login-title" }, "Log in to vmyard"),
    h("label", { for: "login-username" }, "Username"),
    h("input", { id: "login-username", name: "username", type: "text", autocomplete: "username", required: true }),
    h("label", { for: "login-password" }, "Password"),
    h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    error,
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Log in")));
  current = null;
  main.replaceChildren(form);
  form.username.focus();
}

function started() {
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = session.user.username + (session.user.is_admin ? " (admin)" : "");
  listen();
  show();
}

function listen() {
  if (events) events.close();
  const live = document.getElementById("live");
  events = new EventSource(UI + "events");
  events.addEventListener("hello", () => { live.textContent = "live"; });
  events.addEventListener("changed", liveRefresh);
  events.onerror = () => { live.textContent = "reconnecting…"; };
}

// At most one live re-read at a time; changes that arrive meanwhile make one more afterwards.
let refreshing = false, again = false;
async function liveRefresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try { if (current) await current.refresh({ live: true }); } catch (e) { /* the next change tries again */ }
  refreshing = false;
  if (again) { again = false; liveRefresh(); }
}

window.addEventListener("hashchange", show);
window.addEventListener("vmyard:logged-out", () => { session.user = null; showLogin("Your session has ended; log in again."); });
document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  showLogin("Logged out.");
});

whoami().then((me) => (me ? started() : showLogin()), (e) => showLogin(e.message));
