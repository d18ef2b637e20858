// The console's shell: sign-in with the admin key, then one view at a time
// (#/models, #/tenants, #/usage, #/audit). A refused key at any point signs out.
import { api, session, Unauthorized } from "./api.js";
import { mountAudit } from "./audit-view.js";
import { h, replace } from "./dom.js";
import { mountModels } from "./models-view.js";
import { mountTenants } from "./tenants-view.js";
import { mountUsage } from "./usage-view.js";

const VIEWS = {
  models: { label: "Models", mount: mountModels },
  tenants: { label: "Tenants & keys", mount: mountTenants },
  usage: { label: "Usage & costs", mount: mountUsage },
  audit: { label: "Audit log", mount: mountAudit },
};

const root = document.getElementById("app");
let unmount = null;

function stopView() {
  unmount?.();
  unmount = null;
}

function showLogin(message = "") {
  stopView();
  const input = h("input", { id: "admin-key", name: "admin-key", type: "password", autocomplete: "current-password", required: true, autofocus: true });
  const error = h("p", { class: message ? "status error" : "status", role: "alert", id: "login-error" }, message);
  const form = h(
    "form",
    { id: "login", class: "card login" },
    h("h1", {}, "llamux console"),
    h("label", { for: "admin-key" }, "Admin key (LLAMUX_ADMIN_KEY)"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    error,
    h("p", { class: "muted small" }, "The key is kept in this tab's session storage and sent only to this server."),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    session.set(input.value.trim());
    try {
      await api("/admin/tenants", { signIn: true });
      if (!location.hash) location.hash = "#/models";
      route();
    } catch (err) {
      session.clear();
      error.className = "status error";
      error.textContent = err instanceof Unauthorized ? "That is not the admin key." : err.message;
    }
  });
  replace(root, form);
  input.focus();
}

function route() {
  if (!session.key) return showLogin();
  stopView();
  const name = location.hash.replace(/^#\/?/, "") || "models";
  const view = VIEWS[name] ?? VIEWS.models;
  const main = h("main", { id: "view", "data-view": name in VIEWS ? name : "models" });
  const nav = h(
    "nav",
    {},
    Object.entries(VIEWS).map(([key, v]) => h("a", { href: `#/${key}`, class: view === v ? "active" : null }, v.label)),
  );
  const signOut = h("button", { type: "button", class: "small-button", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", () => {
    session.clear();
    showLogin();
  });
  replace(root, h("header", { class: "top" }, h("span", { class: "brand" }, "llamux"), nav, signOut), main);
  unmount = view.mount(main);
}

window.addEventListener("hashchange", route);
window.addEventListener("llamux:unauthorized", () => showLogin("The admin key was refused; sign in again."));
route();
