// The alertbridge console: plain JavaScript over the admin API (/api/v1), no build step.
"use strict";
const state = { csrf: null, me: null };
const view = document.getElementById("view");
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const answer = await fetch(path, { credentials: "same-origin", ...options, headers });
  if (answer.status === 401) { showLogin(); throw new Error("signed out"); }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error((typeof body.detail === "string" ? body.detail : null) || body.error || `HTTP ${answer.status}`);
  return body;
}

function showLogin() {
  document.getElementById("nav").hidden = true;
  view.innerHTML = document.getElementById("login")?.outerHTML || "";
  const form = view.querySelector("#login");
  form.hidden = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const answer = await fetch("/console/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
    if (!answer.ok) { form.querySelector("#login-error").textContent = (await answer.json()).error; return; }
    await start();
  });
}

async function start() {
  const answer = await fetch("/console/me", { credentials: "same-origin" });
  if (!answer.ok) return showLogin();
  state.me = await answer.json();
  state.csrf = state.me.csrf;
  document.getElementById("nav").hidden = false;
  if (!location.hash) location.hash = "#/events";
  route();
  pollBell();
}

async function pollBell() {
  try { document.getElementById("unread").textContent = (await api("/api/v1/notifications/unread")).unread; } catch (e) { return; }
  setTimeout(pollBell, 1500);
}

const pages = {
  async events(params) {
    const q = new URLSearchParams(params);
    const rows = await api(`/api/v1/events?${q}`);
    view.innerHTML = `<h1>Events</h1>
      <form class="filters" id="filters"><input name="kind" placeholder="kind" value="${esc(params.kind || "")}">
      <select name="status"><option value="">any status</option>${["routed", "unmatched", "failed", "suppressed", "silenced", "inhibited", "received"].map((s) => `<option ${params.status === s ? "selected" : ""}>${s}</option>`).join("")}</select>
      <button>Filter</button></form>
      <table><thead><tr><th>received</th><th>kind</th><th>title</th><th>endpoint</th><th>status</th></tr></thead><tbody>
      ${rows.map((r) => `<tr><td>${when(r.event.received_at)}</td><td><a href="#/event/${esc(r.event.id)}">${esc(r.event.kind)}</a></td><td>${esc(r.event.title)}</td><td>${esc(r.event.endpoint)}</td><td class="status-${esc(r.status)}">${esc(r.status)}</td></tr>`).join("")}
      </tbody></table>`;
    view.querySelector("#filters").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = Object.fromEntries([...new FormData(e.target)].filter(([, v]) => v));
      location.hash = `#/events?${new URLSearchParams(f)}`;
    });
    state.refresh = setTimeout(() => location.hash.startsWith("#/events") && route(), 3000);
  },
  async event(params, id) {
    const e = await api(`/api/v1/events/${encodeURIComponent(id)}`);
    const trace = (e.trace || []).map((step) => step.route
      ? `<li><b>${esc(step.route)}</b>: ${step.matched ? "matched" : "did not match"}<ul>${(step.reasons || []).map((r) => `<li>${esc(r)}</li>`).join("")}</ul>
         ${step.repeat ? `<div>${esc(step.repeat.result)}${step.repeat.why ? `: ${esc(step.repeat.why)}` : ""}</div>` : ""}
         ${(step.actions || []).map((a) => `<div>→ ${esc(a.action)} on ${esc(a.target)} ${a.error ? `<span class="error">${esc(a.error)}</span>` : ""}${a.waiting ? ` (waiting ${esc(a.waiting)})` : ""}</div>`).join("")}</li>`
      : `<li>${esc(step.result || (step.team !== undefined ? `team: ${step.team || "none"}` : ""))} ${esc(step.why || (step.matched_by ? `by ${step.matched_by}` : ""))}</li>`).join("");
    view.innerHTML = `<h1>${esc(e.event.kind)}</h1><p>${esc(e.event.title)} · <span class="status-${esc(e.status)}">${esc(e.status)}</span> · received ${when(e.event.received_at)}</p>
      <h2>Why</h2><ol data-testid="trace">${trace}</ol>
      <h2>Deliveries</h2><table><thead><tr><th>target</th><th>action</th><th>status</th><th>attempts</th><th>last error</th><th></th></tr></thead><tbody>
      ${e.deliveries.map((d) => `<tr><td>${esc(d.target)}</td><td><a href="#/delivery/${esc(d.id)}">${esc(d.action)}</a></td><td class="status-${esc(d.status)}">${esc(d.status)}</td><td>${d.attempts}</td><td>${esc(d.last_error)}</td>
        <td>${["dead", "delivered"].includes(d.status) ? `<button data-replay="${esc(d.id)}">Replay</button>` : ""}</td></tr>`).join("")}</tbody></table>
      <h2>Payload</h2><pre>${esc(JSON.stringify(e.event.raw, null, 2))}</pre>`;
    bindReplay();
  },
  async delivery(params, id) {
    const d = await api(`/api/v1/deliveries/${encodeURIComponent(id)}`);
    view.innerHTML = `<h1>${esc(d.action)} → ${esc(d.target)}</h1><p class="status-${esc(d.status)}">${esc(d.status)}</p>
      <table><thead><tr><th>#</th><th>started</th><th>took</th><th>outcome</th><th>HTTP</th><th>message</th></tr></thead><tbody>
      ${d.attempts_made.map((a) => `<tr><td>${a.number}</td><td>${when(a.started_at)}</td><td>${Math.round(a.duration * 1000)} ms</td><td>${esc(a.outcome)}</td><td>${esc(a.status_code)}</td><td>${esc(a.message)}</td></tr>`).join("")}</tbody></table>
      <h2>Fields</h2><pre>${esc(JSON.stringify(d.fields, null, 2))}</pre>`;
  },
  async dead() {
    const [rows, targets] = await Promise.all([api("/api/v1/deliveries?status=dead"), api("/api/v1/targets")]);
    view.innerHTML = `<h1>Dead letters</h1>
      <form class="filters" id="bulk"><select name="target">${targets.map((t) => `<option>${esc(t.name)}</option>`).join("")}</select>
      <label>last <input name="hours" type="number" min="1" value="24" style="width:5em"> hours</label>
      <button type="submit">Preview replay</button> <span role="status" id="bulk-status"></span></form>
      <table><thead><tr><th>target</th><th>action</th><th>event</th><th>last error</th><th></th></tr></thead><tbody>
      ${rows.map((d) => `<tr><td>${esc(d.target)}</td><td>${esc(d.action)}</td><td><a href="#/event/${esc(d.event_id)}">${esc(d.event_id)}</a></td><td>${esc(d.last_error)}</td><td><button data-replay="${esc(d.id)}">Replay</button></td></tr>`).join("") || `<tr><td colspan="5">None.</td></tr>`}</tbody></table>`;
    bindReplay();
    const bulk = view.querySelector("#bulk"), status = view.querySelector("#bulk-status");
    bulk.addEventListener("submit", async (e) => {
      e.preventDefault();
      const selection = { target: bulk.target.value, status: "dead", since: Date.now() / 1000 - Number(bulk.hours.value) * 3600 };
      const preview = await api("/api/v1/replay", { method: "POST", body: JSON.stringify({ ...selection, preview: true }) });
      status.innerHTML = `${preview.count} would be replayed. ${preview.count ? `<button type="button" id="bulk-go">Replay ${preview.count}</button>` : ""}`;
      view.querySelector("#bulk-go")?.addEventListener("click", async () => {
        const done = await api("/api/v1/replay", { method: "POST", body: JSON.stringify(selection) });
        status.textContent = `${done.count} queued again.`;
      });
    });
  },
  async inbox() {
    const rows = await api("/api/v1/notifications");
    view.innerHTML = `<h1>Notifications</h1><ul>${rows.map((n) => `<li class="${n.read_at ? "" : "unread"}"><a href="#/new-incident?from=${n.id}" data-notification="${n.id}">${esc(n.title)}</a> <small>${when(n.updated_at)}</small><div>${esc(n.body)}</div></li>`).join("") || "<li>Nothing yet.</li>"}</ul>`;
  },
  async "new-incident"(params) {
    let form = {};
    if (params.from) {
      await api(`/api/v1/notifications/${params.from}/read`, { method: "POST" });
      const note = (await api("/api/v1/notifications")).find((n) => String(n.id) === params.from);
      form = note?.data?.prefill || {};
    }
    const choice = (name, options) => `<select name="${name}">${options.map((o) => `<option ${form[name] === o ? "selected" : ""}>${o}</option>`).join("")}</select>`;
    view.innerHTML = `<h1>New incident</h1><form id="incident">
      <label>Title <input name="title" value="${esc(form.title)}" required></label>
      <label>Description <textarea name="description" rows="6">${esc(form.description)}</textarea></label>
      <label>Urgency ${choice("urgency", ["high", "medium", "low"])}</label>
      <label>Criticality ${choice("criticality", ["high", "medium", "low"])}</label>
      <label>Status ${choice("status", ["open", "investigating", "resolved"])}</label>
      <label>Customer <input name="customer" value="${esc(form.customer)}"></label>
      <label>Tags <input name="tags" value="${esc((form.tags || []).join(", "))}"></label>
      <button type="submit">Create incident</button><p class="error" role="alert"></p></form>`;
    view.querySelector("#incident").addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(e.target));
      data.tags = data.tags.split(",").map((t) => t.trim()).filter(Boolean);
      if (params.from) data.from_notification = Number(params.from);
      try { await api("/api/v1/incidents", { method: "POST", body: JSON.stringify(data) }); location.hash = "#/incidents"; }
      catch (err) { e.target.querySelector(".error").textContent = err.message; }
    });
  },
  async incidents() {
    const rows = await api("/api/v1/incidents");
    view.innerHTML = `<h1>Incidents</h1><table><thead><tr><th>title</th><th>status</th><th>urgency</th><th>customer</th><th>created</th></tr></thead><tbody>
      ${rows.map((i) => `<tr><td>${esc(i.title)}</td><td>${esc(i.status)}</td><td>${esc(i.urgency)}</td><td>${esc(i.customer)}</td><td>${when(i.created_at)}</td></tr>`).join("") || `<tr><td colspan="5">None.</td></tr>`}</tbody></table>`;
  },
  async teams() {
    const rows = await api("/api/v1/teams");
    view.innerHTML = `<h1>Teams</h1>${rows.map((t) => `<h2>${esc(t.name)}</h2><ul>${Object.entries(t.routing).filter(([, v]) => v.length).map(([k, v]) => `<li>${esc(k)}: ${v.map(esc).join(", ")}</li>`).join("")}</ul>`).join("") || "<p>No teams.</p>"}`;
  },
  async integrations() {
    const [endpoints, targets, catalog] = await Promise.all([api("/api/v1/endpoints"), api("/api/v1/targets"), api("/api/v1/catalog")]);
    const kinds = { endpoint: Object.fromEntries(catalog.sources.map((k) => [k.name, k])), target: Object.fromEntries(catalog.targets.map((k) => [k.name, k])) };
    const admin = state.me.role === "admin";
    const settingsText = (o) => Object.keys(o.settings || {}).length ? JSON.stringify(o.settings) : "";
    const actions = (kind, o) => o.provisioned
      ? `<span class="muted" data-testid="provisioned-${esc(o.name)}">provisioned (read-only)</span>`
      : admin ? `<button type="button" data-edit="${kind}:${esc(o.name)}">Edit</button> <button type="button" class="quiet" data-delete="${kind}:${esc(o.name)}">Delete</button>` : "";
    const form = (kind, typeField, options) => `<form id="${kind}-form" class="object-form" ${admin ? "" : "hidden"}>
      <h3>Add ${kind}</h3>
      <label>Name <input name="name" required pattern="[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"></label>
      <label>${typeField === "source" ? "Source" : "Type"} <select name="${typeField}">${options.map((o) => `<option>${esc(o)}</option>`).join("")}</select></label>
      ${kind === "endpoint" ? `<label>Path <input name="path" required placeholder="/webhooks/…"></label>` : `<label data-field="url">URL <input name="url" placeholder="https://…"></label>`}
      <label data-field="secret"><span>Secret: <code data-testid="${kind}-secret-name"></code></span><input name="secret" type="password" autocomplete="off"></label>
      <label>More settings (JSON) <textarea name="extra" rows="3" placeholder='${kind === "endpoint" ? `{"labels": {"team": "payments"}}` : `{"headers": {"X-Team": "payments"}}`}'></textarea></label>
      <div><button type="submit">Save</button> <button type="button" class="quiet" data-cancel>Cancel</button></div>
      <p role="status" id="${kind}-status"></p></form>`;
    view.innerHTML = `<h1>Integrations</h1>
      <p class="muted">Endpoints take webhooks; targets receive actions. Those from the configuration file are provisioned: change them there.
      Secrets are encrypted at rest and shown masked.</p>
      <h2>Endpoints</h2><table data-testid="endpoints"><thead><tr><th>name</th><th>source</th><th>path</th><th>settings</th><th></th></tr></thead><tbody>
      ${endpoints.map((e) => `<tr><td>${esc(e.name)}</td><td>${esc(e.source)}</td><td><code>${esc(e.path)}</code></td><td><code>${esc(settingsText(e))}</code></td><td class="actions">${actions("endpoint", e)}</td></tr>`).join("") || `<tr><td colspan="5">None.</td></tr>`}</tbody></table>
      ${form("endpoint", "source", Object.keys(kinds.endpoint))}
      <h2>Targets</h2><table data-testid="targets"><thead><tr><th>name</th><th>type</th><th>settings</th><th></th></tr></thead><tbody>
      ${targets.map((t) => `<tr><td>${esc(t.name)}</td><td>${esc(t.type)}</td><td><code>${esc(settingsText(t))}</code></td><td class="actions">${actions("target", t)}</td></tr>`).join("") || `<tr><td colspan="4">None.</td></tr>`}</tbody></table>
      ${form("target", "type", Object.keys(kinds.target))}`;
    const found = { endpoint: endpoints, target: targets };
    const bind = (kind, typeField) => {
      const f = view.querySelector(`#${kind}-form`), status = f.querySelector('[role="status"]');
      let editing = null;
      const secretOf = () => kinds[kind][f[typeField].value]?.secrets[0];
      const shape = () => {  // the secret field (and a URL) the chosen source or type has
        const k = kinds[kind][f[typeField].value];
        f.querySelector("[data-testid$=secret-name]").textContent = secretOf() || "";
        f.querySelector('[data-field="secret"]').hidden = !secretOf();
        const url = f.querySelector('[data-field="url"]');
        if (url) url.hidden = !k?.fields.includes("url");
      };
      const reset = () => { editing = null; f.reset(); f.name.readOnly = false; f.querySelector("h3").textContent = `Add ${kind}`; f.secret.placeholder = ""; shape(); };
      f[typeField].addEventListener("change", shape);
      f.querySelector("[data-cancel]").addEventListener("click", () => { reset(); status.textContent = ""; });
      shape();
      f.addEventListener("submit", async (e) => {
        e.preventDefault();
        let extra = {};
        try { extra = f.extra.value.trim() ? JSON.parse(f.extra.value) : {}; } catch (err) { status.textContent = "More settings: not JSON"; return; }
        const body = { ...extra, name: f.name.value, [typeField]: f[typeField].value };
        if (kind === "endpoint") body.path = f.path.value;
        else if (f.url.value && !f.url.closest("label").hidden) body.url = f.url.value;
        const secret = secretOf();
        if (secret && f.secret.value) body[secret] = f.secret.value;
        else if (secret && editing && editing.settings[secret] !== undefined) body[secret] = editing.settings[secret];  // masked: keeps it
        if (editing && kind === "target") { body.timeout = body.timeout ?? editing.timeout; if (editing.rate_limit && body.rate_limit === undefined) body.rate_limit = editing.rate_limit; }
        const path = editing ? `/api/v1/${kind}s/${encodeURIComponent(editing.name)}` : `/api/v1/${kind}s`;
        try {
          await api(path, { method: editing ? "PUT" : "POST", body: JSON.stringify(body) });
          await pages.integrations();
          view.querySelector(`#${kind}-status`).textContent = "Saved.";
        } catch (err) { status.textContent = err.message; }
      });
      view.querySelectorAll(`[data-edit^="${kind}:"]`).forEach((b) => b.addEventListener("click", () => {
        const o = found[kind].find((x) => x.name === b.dataset.edit.slice(kind.length + 1));
        reset(); editing = o;
        f.querySelector("h3").textContent = `Edit ${kind} ${o.name}`;
        f.name.value = o.name; f.name.readOnly = true; f[typeField].value = o[typeField]; shape();
        if (kind === "endpoint") f.path.value = o.path;
        const rest = { ...o.settings }, secret = secretOf();
        if (kind === "target" && rest.url !== undefined) { f.url.value = rest.url; delete rest.url; }
        if (secret && rest[secret] !== undefined) { f.secret.placeholder = `unchanged (${rest[secret]})`; delete rest[secret]; }
        f.extra.value = Object.keys(rest).length ? JSON.stringify(rest) : "";
        f.scrollIntoView();
      }));
      view.querySelectorAll(`[data-delete^="${kind}:"]`).forEach((b) => b.addEventListener("click", async () => {
        const name = b.dataset.delete.slice(kind.length + 1);
        if (!confirm(`Delete ${kind} ${name}?`)) return;
        try { await api(`/api/v1/${kind}s/${encodeURIComponent(name)}`, { method: "DELETE" }); await pages.integrations(); }
        catch (err) { status.textContent = err.message; }
      }));
    };
    bind("endpoint", "source");
    bind("target", "type");
  },
  async settings() {
    const s = await fetch("/api/integrations/pagerduty", { credentials: "same-origin" }).then((r) => r.json());
    view.innerHTML = `<h1>Settings</h1><h2>PagerDuty</h2><form id="pd">
      <label><span><input type="checkbox" name="enabled" ${s.enabled ? "checked" : ""}> Enabled</span></label>
      <label>Webhook URL <input readonly value="${esc(s.webhookUrl)}" data-testid="webhook-url"></label>
      <label>API key <input name="apiKey" value="${esc(s.apiKey)}" autocomplete="off"></label>
      <label>Integration key <input name="integrationKey" value="${esc(s.integrationKey)}"></label>
      <label>Webhook secret <input name="webhookSecret" type="password" placeholder="${s.webhookSecretSet ? "set" : "not set"}"></label>
      <div><button type="button" id="test">Test connection</button> <button type="submit">Save</button></div>
      <p role="status" id="pd-status"></p></form>`;
    const form = view.querySelector("#pd"), status = view.querySelector("#pd-status");
    const headers = { "Content-Type": "application/json", "X-CSRF-Token": state.csrf };
    view.querySelector("#test").addEventListener("click", async () => {
      const key = form.apiKey.value.startsWith("••••") ? undefined : form.apiKey.value;
      const r = await fetch("/api/integrations/pagerduty/test", { method: "POST", headers, body: JSON.stringify({ apiKey: key }) }).then((a) => a.json());
      status.textContent = r.message || r.error;
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { enabled: form.enabled.checked, apiKey: form.apiKey.value, integrationKey: form.integrationKey.value };
      if (form.webhookSecret.value) body.webhookSecret = form.webhookSecret.value;
      const r = await fetch("/api/integrations/pagerduty", { method: "POST", headers, body: JSON.stringify(body) });
      const saved = await r.json();
      status.textContent = r.ok ? "Saved." : saved.error;
      if (r.ok) form.apiKey.value = saved.apiKey || "";
    });
  },
};

function bindReplay() {
  view.querySelectorAll("[data-replay]").forEach((button) => button.addEventListener("click", async () => {
    const r = await api("/api/v1/replay", { method: "POST", body: JSON.stringify({ ids: [button.dataset.replay] }) });
    button.replaceWith(`queued (${r.count})`);
  }));
}

async function route() {
  clearTimeout(state.refresh);
  const [path, query] = location.hash.slice(2).split("?");
  const [name, id] = path.split("/");
  const page = pages[name] || pages.events;
  try { await page(Object.fromEntries(new URLSearchParams(query || "")), id && decodeURIComponent(id)); }
  catch (e) { if (e.message !== "signed out") view.innerHTML = `<p class="error">${esc(e.message)}</p>`; }
}

window.addEventListener("hashchange", () => state.me && route());
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/console/logout", { method: "POST", headers: { "X-CSRF-Token": state.csrf } });
  state.me = null; showLogin();
});
start();
