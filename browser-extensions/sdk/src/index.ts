/**
 * Agent Helper JS SDK: the web Agent Desktop's handle on the helper installed
 * on the agent's computer (softphone, devices, call popup), through the
 * Agent Helper browser extension.
 *
 * ```js
 * const helper = new AgentHelper({ minHelperVersion: "0.1.0" });
 * helper.addEventListener("status", () => render(helper.status));
 * helper.on("call-incoming", (call) => showIncoming(call));
 * await helper.start();
 * const { callId } = await helper.call({ target: "sip:1001@pbx.example.com" });
 * ```
 *
 * `status.state` is one of `extension-missing` (the extension is not
 * installed, disabled, or this origin is not allowed), `helper-missing` (the
 * extension cannot reach or start the helper), `helper-outdated` (older than
 * `minHelperVersion`), `connecting` and `ready`. Requests and events are typed
 * from the helper's own protocol schema (`protocol.ts`, generated).
 */

import type { EventName, Events, HelloResult, MethodName, Methods } from "./protocol.js";

export type * from "./protocol.js";

export const SDK_VERSION = "0.1.0";
const CHANNEL = "agent-helper";

export type Status =
  | { state: "extension-missing" }
  | { state: "helper-missing"; message?: string }
  | { state: "helper-outdated"; required: string; installed: string }
  | { state: "connecting"; message?: string }
  | { state: "ready"; hello: HelloResult };

export interface AgentHelperOptions {
  /** Oldest helper this page works with (semver); older → `helper-outdated`. */
  minHelperVersion?: string;
  /** A short name of the page, for the helper's log. */
  client?: string;
  /** How long to wait for the extension to show itself, ms (default 2000). */
  extensionTimeoutMs?: number;
  /** How long a request may take before it fails with `timeout`, ms (default 30000). */
  requestTimeoutMs?: number;
}

/** An error answer: `code` is stable (see docs/protocol.md), `message` is for people. */
export class AgentHelperError extends Error {
  readonly code: string;
  readonly data: unknown;
  constructor(code: string, message: string, data?: unknown) {
    super(message);
    this.name = "AgentHelperError";
    this.code = code;
    this.data = data;
  }
}

type Params<M extends MethodName> = Methods[M]["params"];
type Result<M extends MethodName> = Methods[M]["result"];

interface Waiter {
  resolve: (value: unknown) => void;
  reject: (error: AgentHelperError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface FromExtension {
  channel: string;
  dir: string;
  type: string;
  [key: string]: unknown;
}

export class AgentHelper extends EventTarget {
  #status: Status = { state: "connecting" };
  readonly #options: Required<Omit<AgentHelperOptions, "minHelperVersion">> & { minHelperVersion?: string };
  readonly #pending = new Map<number, Waiter>();
  #nextId = 1;
  #present = false;
  #extensionTimer: ReturnType<typeof setTimeout> | undefined;
  #listener = (e: MessageEvent) => this.#onMessage(e);

  constructor(options: AgentHelperOptions = {}) {
    super();
    this.#options = {
      client: options.client ?? "agent-desktop",
      extensionTimeoutMs: options.extensionTimeoutMs ?? 2000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      minHelperVersion: options.minHelperVersion,
    };
  }

  get status(): Status {
    return this.#status;
  }

  /** Looks for the extension and connects; resolves with the first settled status. */
  start(): Promise<Status> {
    window.addEventListener("message", this.#listener);
    const settled = new Promise<Status>((resolve) => {
      const check = () => {
        if (this.#status.state !== "connecting") {
          this.removeEventListener("status", check);
          resolve(this.#status);
        }
      };
      this.addEventListener("status", check);
    });
    this.#post({ type: "ping" });
    this.#extensionTimer = setTimeout(() => {
      if (!this.#present) this.#setStatus({ state: "extension-missing" });
    }, this.#options.extensionTimeoutMs);
    return settled;
  }

  /** Stops listening; requests in flight fail. */
  close(): void {
    window.removeEventListener("message", this.#listener);
    clearTimeout(this.#extensionTimer);
    for (const [id, w] of this.#pending) {
      clearTimeout(w.timer);
      w.reject(new AgentHelperError("closed", "the SDK was closed"));
      this.#pending.delete(id);
    }
  }

  /** Asks the extension to try the helper again now (e.g. after installing it). */
  retry(): void {
    this.#post({ type: "retry" });
  }

  /** Any method of the protocol, typed by name. */
  request<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>> {
    const id = this.#nextId++;
    return new Promise<Result<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new AgentHelperError("timeout", `${method}: no answer within ${this.#options.requestTimeoutMs} ms`));
      }, this.#options.requestTimeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.#post({ type: "request", id, method, params });
    });
  }

  /** Listens to one event with its typed payload; returns the unsubscribe function. */
  on<E extends EventName>(event: E, listener: (data: Events[E]) => void): () => void {
    const wrapped = (e: Event) => listener((e as CustomEvent<Events[E]>).detail);
    this.addEventListener(event, wrapped);
    return () => this.removeEventListener(event, wrapped);
  }

  getStatus = () => this.request("getStatus", {});
  login = (p: Params<"login">) => this.request("login", p);
  logout = () => this.request("logout", {});
  call = (p: Params<"call">) => this.request("call", p);
  answerCall = (p: Params<"answerCall"> = {}) => this.request("answerCall", p);
  rejectCall = (p: Params<"rejectCall"> = {}) => this.request("rejectCall", p);
  endCall = (p: Params<"endCall"> = {}) => this.request("endCall", p);
  holdCall = (p: Params<"holdCall"> = {}) => this.request("holdCall", p);
  resumeCall = (p: Params<"resumeCall"> = {}) => this.request("resumeCall", p);
  muteCall = (p: Params<"muteCall"> = {}) => this.request("muteCall", p);
  unmuteCall = (p: Params<"unmuteCall"> = {}) => this.request("unmuteCall", p);
  transferCall = (p: Params<"transferCall">) => this.request("transferCall", p);
  confirmTransfer = (p: Params<"confirmTransfer"> = {}) => this.request("confirmTransfer", p);
  sendDtmf = (p: Params<"sendDtmf">) => this.request("sendDtmf", p);
  listDevices = () => this.request("listDevices", {});
  setDevices = (p: Params<"setDevices">) => this.request("setDevices", p);
  getCallStats = (p: Params<"getCallStats"> = {}) => this.request("getCallStats", p);

  #post(message: Record<string, unknown>): void {
    window.postMessage({ channel: CHANNEL, dir: "to-extension", ...message }, window.location.origin);
  }

  #setStatus(status: Status): void {
    this.#status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }

  #onMessage(e: MessageEvent): void {
    if (e.source !== window || e.origin !== window.location.origin) return;
    const m = e.data as FromExtension;
    if (!m || typeof m !== "object" || m.channel !== CHANNEL || m.dir !== "from-extension") return;
    switch (m.type) {
      case "present":
        this.#present = true;
        clearTimeout(this.#extensionTimer);
        if (this.#status.state === "extension-missing") this.#setStatus({ state: "connecting" });
        break;
      case "link":
        this.#onLink(m);
        break;
      case "response":
        this.#onResponse(m);
        break;
      case "event":
        this.dispatchEvent(new CustomEvent(String(m.event), { detail: m.data }));
        break;
    }
  }

  #onLink(m: FromExtension): void {
    const message = typeof m.message === "string" ? m.message : undefined;
    switch (m.state) {
      case "connected":
        void this.#hello();
        break;
      case "helper-missing":
        this.#setStatus({ state: "helper-missing", message });
        break;
      case "extension-missing":
        this.#present = false;
        this.#setStatus({ state: "extension-missing" });
        break;
      default:
        this.#setStatus({ state: "connecting", message });
    }
  }

  async #hello(): Promise<void> {
    try {
      const hello = await this.request("hello", {
        sdkVersion: SDK_VERSION,
        minHelperVersion: this.#options.minHelperVersion,
        client: this.#options.client,
      });
      this.#setStatus({ state: "ready", hello });
    } catch (e) {
      const error = e as AgentHelperError;
      const data = error.data as { required?: string; installed?: string } | undefined;
      if (error.code === "helper-outdated" && data?.required && data.installed) {
        this.#setStatus({ state: "helper-outdated", required: data.required, installed: data.installed });
      } else {
        this.#setStatus({ state: "helper-missing", message: error.message });
      }
    }
  }

  #onResponse(m: FromExtension): void {
    const id = m.id as number;
    const waiter = this.#pending.get(id);
    if (!waiter) return;
    this.#pending.delete(id);
    clearTimeout(waiter.timer);
    const error = m.error as { code: string; message: string; data?: unknown } | undefined;
    if (error) waiter.reject(new AgentHelperError(error.code, error.message, error.data));
    else waiter.resolve(m.result);
  }
}
