import { allowedOrigins, originOf } from "./origins.js";

const api = globalThis.browser ?? globalThis.chrome;
const $ = (id) => document.getElementById(id);

function item(origin, removable) {
  const li = document.createElement("li");
  const code = document.createElement("code");
  code.textContent = origin;
  li.append(code);
  if (removable) {
    const remove = document.createElement("button");
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${origin}`);
    remove.addEventListener("click", async () => {
      const { userOrigins = [] } = await api.storage.local.get("userOrigins");
      await api.storage.local.set({ userOrigins: userOrigins.filter((o) => o !== origin) });
      show();
    });
    li.append(" ", remove);
  }
  return li;
}

async function show() {
  const { admin, user, locked } = await allowedOrigins();
  $("admin").replaceChildren(...(admin.length ? admin.map((o) => item(o, false)) : [item("none", false)]));
  $("user").replaceChildren(...user.map((o) => item(o, true)));
  $("locked").hidden = !locked;
  $("add").hidden = locked;
}

$("add").addEventListener("submit", async (e) => {
  e.preventDefault();
  const origin = originOf($("origin").value.trim());
  if (!origin) {
    $("problem").textContent = "Enter an http:// or https:// address.";
    return;
  }
  const { userOrigins = [] } = await api.storage.local.get("userOrigins");
  if (!userOrigins.includes(origin)) await api.storage.local.set({ userOrigins: [...userOrigins, origin] });
  $("problem").textContent = "";
  $("origin").value = "";
  show();
});

show();
