// Which pages may use the helper: the administrator's list (managed storage,
// set by enterprise policy) plus the origins the user added on the options
// page, unless the administrator locked that. Exact origins only.

const api = globalThis.browser ?? globalThis.chrome;

/** `https://host[:port]` of a URL, or null for anything that is not http(s). */
export function originOf(text) {
  try {
    const url = new URL(text);
    if (url.protocol !== "https:" && url.protocol !== "http:") return null;
    return url.origin;
  } catch {
    return null;
  }
}

async function managed() {
  try {
    return (await api.storage.managed.get(["allowedOrigins", "lockUserOrigins"])) ?? {};
  } catch {
    // No policy for this extension: an ordinary installation.
    return {};
  }
}

export async function allowedOrigins() {
  const policy = await managed();
  const admin = Array.isArray(policy.allowedOrigins) ? policy.allowedOrigins : [];
  const { userOrigins = [] } = policy.lockUserOrigins ? {} : await api.storage.local.get("userOrigins");
  return { admin: admin.map(originOf).filter(Boolean), user: userOrigins, locked: !!policy.lockUserOrigins };
}

export async function isAllowed(origin) {
  const { admin, user } = await allowedOrigins();
  return origin !== null && (admin.includes(origin) || user.includes(origin));
}
