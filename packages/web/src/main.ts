/**
 * The demo page: calls demo.gateway.v1.GatewayService from the browser with
 * connect-web over the Connect protocol or gRPC-Web, with the generated code
 * the services use, and shows for every call its status code, the time it
 * took end to end, and the hops it crossed (from the `server-timing` trailer
 * that rpc-kit assembles at every hop).
 *
 * No innerHTML anywhere: the page runs under a CSP that enforces Trusted
 * Types, so every node is built with the DOM API.
 */
import "./styles.css";
import { type CallOptions, type Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { GatewayService } from "@demo/proto/demo/gateway/v1/gateway_pb";
import type { Profile } from "@demo/proto/demo/profiles/v1/profiles_pb";
import type { User } from "@demo/proto/demo/users/v1/users_pb";
import { BadRequestSchema } from "@demo/proto/google/rpc/error_details_pb";
import { type CallTimings, parseServerTiming, SERVER_TIMING, SERVER_TIMING_REQUEST } from "@demo/rpc-kit/server-timing";

type Protocol = "connect" | "grpc-web";

/** rpc-kit's fault-injection headers (fault-injection.ts); honoured only with FAULT_INJECTION=on. */
const FAULT_DELAY_HEADER = "x-fault-delay-ms";
const FAULT_TARGET_HEADER = "x-fault-target";
/** After the deadline it sent, how long the page still waits for the gateway's verdict. */
const DEADLINE_GRACE_MS = 2_000;
/** An id the seeded users do not have. */
const UNKNOWN_ID = "u-404";

const transports: Record<Protocol, Transport> = {
  connect: createConnectTransport({ baseUrl: location.origin }),
  "grpc-web": createGrpcWebTransport({ baseUrl: location.origin }),
};
const clients = {
  connect: createClient(GatewayService, transports.connect),
  "grpc-web": createClient(GatewayService, transports["grpc-web"]),
};

function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/** Builds an element with text and attributes; children appended in order. */
function h(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string | undefined)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== undefined) el.append(c);
  return el;
}

function protocol(): Protocol {
  const checked = document.querySelector<HTMLInputElement>('input[name="protocol"]:checked');
  return checked?.value === "grpc-web" ? "grpc-web" : "connect";
}

function baseHeaders(): Headers {
  // Ask every hop for its timing (rpc-kit answers only the calls that ask).
  const headers = new Headers({ [SERVER_TIMING_REQUEST]: "on" });
  const token = byId<HTMLInputElement>("token").value.trim();
  if (token) headers.set("authorization", `Bearer ${token}`);
  return headers;
}

/** The code as the wire and the services' logs write it: `ok`, `not_found`, … */
function codeName(code: Code | undefined): string {
  return code === undefined ? "ok" : codeToString(code);
}

interface Outcome {
  readonly method: string;
  readonly protocol: Protocol;
  readonly code: Code | undefined;
  readonly elapsedMs: number;
  readonly timings: CallTimings;
  /** What to show as the answer. */
  readonly result: Node[];
}

/**
 * Runs one call, timing it end to end and collecting the `server-timing`
 * value from wherever the protocol delivered it: trailers on success, the
 * error's metadata (headers and trailers) on failure.
 */
async function run(
  statusId: string,
  method: string,
  call: (client: (typeof clients)[Protocol], options: CallOptions) => Promise<Node[]>,
  options: CallOptions = {},
): Promise<void> {
  const proto = protocol();
  let serverTiming: string | null = null;
  const keep = (h: Headers) => {
    serverTiming = h.get(SERVER_TIMING) ?? serverTiming;
  };
  const started = performance.now();
  let outcome: Outcome;
  try {
    const result = await call(clients[proto], { ...options, onHeader: keep, onTrailer: keep });
    outcome = {
      method,
      protocol: proto,
      code: undefined,
      elapsedMs: performance.now() - started,
      timings: parseServerTiming(serverTiming),
      result,
    };
  } catch (e) {
    const err = ConnectError.from(e);
    keep(err.metadata);
    outcome = {
      method,
      protocol: proto,
      code: err.code,
      elapsedMs: performance.now() - started,
      timings: parseServerTiming(serverTiming),
      result: describeError(err),
    };
  }
  show(outcome, statusId);
}

function describeError(err: ConnectError): Node[] {
  const violations = err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations);
  // The message of a BadRequest repeats its field errors: show them once, as the list.
  const repeated = violations.length > 0 && violations.every((v) => err.rawMessage.includes(v.description));
  const nodes: Node[] = repeated ? [] : [h("p", { class: "result" }, err.rawMessage)];
  if (violations.length > 0) {
    nodes.push(
      h(
        "ul",
        { class: "violations", "aria-label": "Field errors" },
        ...violations.map((v) => h("li", { "data-field": v.field }, h("code", {}, v.field), `: ${v.description}`)),
      ),
    );
  }
  return nodes;
}

function describeUser(user: User | undefined): string {
  if (user === undefined) return "no user";
  return `${user.id} · ${user.name} · ${user.email}`;
}

function describeProfile(profile: Profile | undefined): Node {
  if (profile === undefined) return h("p", { class: "result" }, "no profile");
  return h(
    "p",
    { class: "result", "data-user-id": profile.user?.id ?? "" },
    h("strong", {}, profile.displayName),
    ` (${profile.initials}) · ${describeUser(profile.user)}`,
  );
}

function ms(value: number): string {
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

function hopList(timings: CallTimings): Node {
  if (timings.hops.length === 0) {
    return h(
      "p",
      { class: "meta" },
      "No hop timings came back: the gateway sends them only with SERVER_TIMING=on (the default), and only if it answered.",
    );
  }
  // A trace view's nesting: each hop is drawn inside the one before it, its caller (the chain is
  // gateway → profiles → users → its queries). The trailer gives durations, not start times, so
  // each span is centred in its caller's: the caller's own time is shown half before, half after.
  const root = Math.max(timings.hops[0]?.durationMs ?? 0, 0.001);
  let parent = { left: 0, width: 100 };
  const spans = timings.hops.map((hop, i) => {
    const width = i === 0 ? 100 : Math.min(parent.width, Math.max(0.5, (hop.durationMs / root) * 100));
    const span = { left: i === 0 ? 0 : parent.left + (parent.width - width) / 2, width };
    parent = span;
    return span;
  });
  return h(
    "ol",
    { class: "hops", "aria-label": "Hops, each inside its caller" },
    ...timings.hops.map((hop, i) => {
      const bar = h("div", { class: "hop-bar" });
      const span = spans[i] ?? { left: 0, width: 100 };
      bar.style.left = `${span.left}%`;
      bar.style.width = `${span.width}%`;
      return h(
        "li",
        { class: "hop", "data-service": hop.service, "data-code": hop.code, "data-ms": String(hop.durationMs) },
        h("span", { class: "hop-name" }, hop.service),
        h("div", { class: "hop-track", "aria-hidden": "true" }, bar),
        h("span", { class: "hop-time" }, ms(hop.durationMs)),
        h(
          "span",
          { class: "hop-detail" },
          `${hop.method} · ${hop.code}`,
          // A database reports no timing of its own: its caller's measure is all there is, answer or not.
          hop.byCaller
            ? hop.code === "ok"
              ? " · timed by its caller"
              : " · no answer: timed by its caller"
            : undefined,
        ),
      );
    }),
  );
}

function traceLine(timings: CallTimings): Node | undefined {
  const traceId = timings.traceparent?.split("-")[1];
  if (traceId === undefined) return undefined;
  // Jaeger of `docker compose up`, on the host that served this page.
  const jaeger = `${location.protocol}//${location.hostname}:16686/trace/${traceId}`;
  return h(
    "p",
    { class: "meta trace" },
    "Trace ",
    h("code", { "data-trace-id": traceId }, traceId),
    " · ",
    h("a", { href: jaeger, rel: "noreferrer", target: "_blank" }, "open in Jaeger"),
    " (when the observability stack runs)",
  );
}

let callsShown = 0;

/**
 * Shows the call under the control that made it (its answer, code, time and
 * hops), says it in one line for screen readers, and adds it to the list of
 * every call this page made, newest first.
 */
function show(o: Outcome, statusId: string): void {
  const code = codeName(o.code);
  const id = `call-${++callsShown}`;
  const item = h(
    "li",
    { class: "call", id, "data-method": o.method, "data-code": code, "data-protocol": o.protocol },
    h(
      "div",
      { class: "call-head" },
      h("span", { class: "call-method" }, o.method),
      h("span", { class: o.code === undefined ? "code code-ok" : "code", "data-role": "code" }, code),
      h("span", { class: "meta", "data-role": "elapsed" }, `${ms(o.elapsedMs)} end to end`),
      h("span", { class: "meta" }, o.protocol === "connect" ? "Connect" : "gRPC-Web"),
    ),
    ...o.result,
    hopList(o.timings),
    traceLine(o.timings),
  );
  const beside = item.cloneNode(true) as HTMLElement;
  beside.removeAttribute("id");
  beside.classList.add("call-beside");
  byId(statusId.replace(/-status$/, "-answer")).replaceChildren(beside);
  byId("calls").prepend(item);
  byId("calls-empty").hidden = true;
  const hops = o.timings.hops.length;
  byId(statusId).replaceChildren(
    `${o.method}: ${code} in ${ms(o.elapsedMs)}${hops > 0 ? `, ${hops} ${hops === 1 ? "hop" : "hops"}` : ""} · `,
    h("a", { href: `#${id}` }, "details"),
  );
}

/** Disables a button while its call runs, so a double click is one call. */
function busy(button: HTMLButtonElement, work: () => Promise<void>): void {
  if (button.getAttribute("aria-busy") === "true") return;
  button.setAttribute("aria-busy", "true");
  button.disabled = true;
  work().finally(() => {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  });
}

function onSubmit(formId: string, handler: (form: HTMLFormElement) => Promise<void>): void {
  const form = byId<HTMLFormElement>(formId);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector<HTMLButtonElement>('button[type="submit"]');
    if (button === null) return;
    if (!form.reportValidity()) return;
    busy(button, () => handler(form));
  });
}

function onClick(id: string, handler: () => Promise<void>): void {
  const button = byId<HTMLButtonElement>(id);
  button.addEventListener("click", () => busy(button, handler));
}

function field(form: HTMLFormElement, name: string): string {
  return String(new FormData(form).get(name) ?? "");
}

const getProfile = (statusId: string, userId: string, extra: CallOptions = {}) =>
  run(
    statusId,
    "GetProfile",
    async (client, options) => {
      const { profile } = await client.getProfile({ userId }, options);
      return [describeProfile(profile)];
    },
    { headers: baseHeaders(), ...extra },
  );

const createUser = (statusId: string, name: string, email: string) =>
  run(
    statusId,
    "CreateUser",
    async (client, options) => {
      const { user } = await client.createUser({ name, email }, options);
      return [h("p", { class: "result", "data-user-id": user?.id ?? "" }, `created ${describeUser(user)}`)];
    },
    { headers: baseHeaders() },
  );

onSubmit("lookup", (form) => getProfile("lookup-status", field(form, "userId").trim()));
onSubmit("create", (form) => createUser("create-status", field(form, "name"), field(form, "email")));
onClick("not-found", () => getProfile("failures-status", UNKNOWN_ID));
onClick("bad-email", () => createUser("failures-status", "Bad Email", "not-an-email"));

onClick("stream", async () => {
  const list = byId("profiles");
  list.replaceChildren();
  await run(
    "stream-status",
    "ListProfiles",
    async (client, options) => {
      let count = 0;
      for await (const { profile } of client.listProfiles({}, options)) {
        count++;
        list.append(h("li", { "data-user-id": profile?.user?.id ?? "" }, describeProfile(profile)));
      }
      return [h("p", { class: "result", "data-count": String(count) }, `${count} profiles streamed`)];
    },
    { headers: baseHeaders() },
  );
});

onSubmit("deadline", (form) => {
  const deadlineMs = Number(field(form, "deadlineMs"));
  const delayMs = Number(field(form, "delayMs"));
  const headers = baseHeaders();
  headers.set(FAULT_DELAY_HEADER, String(delayMs));
  headers.set(FAULT_TARGET_HEADER, "users");
  // The deadline travels as the protocol's timeout header, and the gateway
  // gives the verdict: a timer here would end the call first, and without
  // the hops. The page stops waiting a little after the deadline regardless.
  if (protocol() === "connect") headers.set("connect-timeout-ms", String(deadlineMs));
  else headers.set("grpc-timeout", `${deadlineMs}m`);
  return getProfile("failures-status", "u-1", { headers, signal: AbortSignal.timeout(deadlineMs + DEADLINE_GRACE_MS) });
});
