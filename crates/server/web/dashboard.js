// The DR dashboard: the pool as its chat servers see it, refreshed every second.
import { api, el, clear, session } from "./common.js";

const $ = (id) => document.getElementById(id);
session.token = sessionStorage.getItem("pchat.token");
session.base = sessionStorage.getItem("pchat.base") || location.origin;

async function refresh() {
  try {
    const view = await api("GET", "/api/v1/pool", null, { auth: false, timeout: 2000 });
    $("pool-name").textContent = view.pool || "(no topology)";
    $("pool-state").textContent = view.state;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    const box = $("dcs");
    clear(box);
    const list = el("ul", {});
    for (const a of view.active_servers) list.append(el("li", {}, `${a.name} (${a.data_center}) ${a.url}`));
    box.append(el("section", { class: "dc" }, el("h2", {}, "Active servers"), list));
    $("dash-error").textContent = "";
  } catch (err) {
    $("dash-error").textContent = err.message;
  }
}

refresh();
setInterval(refresh, 1000);
