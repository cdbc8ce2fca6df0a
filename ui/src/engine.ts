// The windows' only way to the helper: the shell's `engine` command, typed by
// the API's generated types, and engine events as Tauri events.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { EventName, Events, MethodName, Methods } from "./protocol";
import type { AgentHelperDesktopShell } from "./shell";

export type Commands = AgentHelperDesktopShell["commands"];

/** An error as the API gives it: a stable code and a message for people. */
export interface ApiError {
  code: string;
  message: string;
}

export function request<M extends MethodName>(method: M, params: Methods[M]["params"]): Promise<Methods[M]["result"]> {
  return invoke("engine", { method, params });
}

export function command<C extends keyof Commands & string>(name: C, args: Record<string, unknown> = {}): Promise<Commands[C]> {
  return invoke(name, args);
}

export function onEvent<E extends EventName>(name: E, handler: (data: Events[E]) => void): Promise<UnlistenFn> {
  return listen<{ event: string; data: unknown }>("engine-event", (e) => {
    if (e.payload.event === name) handler(e.payload.data as Events[E]);
  });
}

export function onAnyEvent(handler: (name: string) => void): Promise<UnlistenFn> {
  return listen<{ event: string; data: unknown }>("engine-event", (e) => handler(e.payload.event));
}

export function errorText(e: unknown): string {
  const err = e as Partial<ApiError>;
  return err && err.message ? `${err.message} (${err.code})` : String(e);
}

/** `sip:1001@pbx;user=phone` → `1001`. */
export function shortUri(uri: string): string {
  const m = /^<?(?:sips?:|tel:)([^@;>]+)/.exec(uri);
  return m?.[1] ?? uri;
}

export function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id}`);
  return el;
}

export function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.dataset.i18n = className;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

/** Runs an action, showing its error (or clearing the last one) in the page's #error. */
export async function act(p: Promise<unknown>): Promise<void> {
  const shown = document.getElementById("error");
  try {
    if (shown) shown.textContent = "";
    await p;
  } catch (e) {
    if (shown) shown.textContent = errorText(e);
  }
}
