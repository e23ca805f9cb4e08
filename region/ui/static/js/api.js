// The REST API (/MAAS/api/2.0/) and the UI's session endpoint, called with the session cookie.
// Every write carries the session's CSRF token in X-CSRFToken (the region refuses it without).
export const API = "/MAAS/api/2.0/";
export const UI = "/MAAS/r/";
export const session = { user: null, csrf: null };

class ApiError extends Error {
  constructor(status, body) {
    super(ApiError.text(body) || `HTTP ${status}`);
    this.status = status;
    this.fields = body && typeof body === "object" && !body.error ? body : {};
  }
  static text(body) {
    if (typeof body === "string") return body;
    if (body && body.error) return body.error;
    if (body && typeof body === "object")
      return Object.entries(body).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
    return "";
  }
}

async function send(method, url, { form, json, body, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers } };
  if (method !== "GET" && session.csrf) init.headers["X-CSRFToken"] = session.csrf;
  if (form) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) {
      if (v === undefined || v === null) continue;
      for (const one of [].concat(v)) params.append(k, String(one));
    }
    init.body = params;
  } else if (json) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const reply = await fetch(url, init);
  const type = reply.headers.get("Content-Type") || "";
  const data = reply.status === 204 ? null : type.includes("json") ? await reply.json() : await reply.text();
  if (reply.status === 401 && url !== UI + "session") window.dispatchEvent(new Event("vmyard:logged-out"));
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data;
}

export const get = (path) => send("GET", API + path);
export const post = (path, form) => send("POST", API + path, { form });
export const put = (path, form) => send("PUT", API + path, { form });
export const del = (path, form) => send("DELETE", API + path, { form });
export const putRaw = (url, body) => send("PUT", url, { body, headers: { "Content-Type": "application/octet-stream" } });
export const text = (url) => send("GET", url);
// Whether a compose would fit now, answered by the region's own placement (nothing is made).
export const composeCheck = (hostId, fields) => send("POST", `${UI}compose-check/${hostId}`, { json: fields });
// Whether a VM host address passes the region's rules (nothing is contacted).
export const addressCheck = (type, address) =>
  send("GET", `${UI}address-check?${new URLSearchParams({ type, power_address: address })}`);

export async function whoami() {
  try {
    const me = await send("GET", UI + "session");
    session.user = me; session.csrf = me.csrf_token;
  } catch (e) {
    if (e.status !== 401) throw e;
    session.user = null; session.csrf = null;
  }
  return session.user;
}

export async function login(username, password) {
  const me = await send("POST", UI + "session", { json: { username, password } });
  session.user = me; session.csrf = me.csrf_token;
  return me;
}

export async function logout() {
  await send("DELETE", UI + "session");
  session.user = null; session.csrf = null;
}
