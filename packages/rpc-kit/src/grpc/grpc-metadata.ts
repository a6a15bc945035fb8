import { decodeBinaryHeader, encodeBinaryHeader } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";

/**
 * Conversions between grpc-js Metadata and the Fetch API Headers that the
 * Connect programming model uses. Binary (`-bin`) values are base64 in
 * Headers, as in Connect, and Buffers in Metadata, as grpc-js wants.
 * Callers convert lazily: it costs microseconds per call.
 */

/** The gRPC A6 trailer by which a server tells its clients when (or whether) to retry. */
export const RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms";

/** The pushback headers of an error passed on from an upstream: its caller must not retry it. */
export const NO_RETRY_PUSHBACK: Readonly<Record<string, string>> = Object.freeze({ [RETRY_PUSHBACK_HEADER]: "-1" });

/** Copies Metadata into new Headers. */
export function metadataToHeaders(metadata: Metadata): Headers {
  const headers = new Headers();
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    const binary = key.endsWith("-bin");
    for (const v of values) {
      if (binary) headers.append(key, encodeBinaryHeader(typeof v === "string" ? Buffer.from(v) : v));
      else headers.append(key, typeof v === "string" ? v : v.toString());
    }
  }
  return headers;
}

/** Copies Headers into Metadata (a new one unless `into` is given), skipping HTTP/2 and gRPC protocol headers. */
export function headersToMetadata(headers: Headers, into: Metadata = new Metadata()): Metadata {
  headers.forEach((value, key) => {
    if (
      key.startsWith(":") ||
      // The one gRPC protocol header that is an application's to send: A6's retry pushback, as a trailer.
      (key.startsWith("grpc-") && key !== RETRY_PUSHBACK_HEADER) ||
      key === "content-type" ||
      key === "te" ||
      key === "user-agent"
    ) {
      return;
    }
    if (key.endsWith("-bin")) {
      // Headers joins repeated values with ", "; each part is one base64 value.
      for (const part of value.split(",")) into.add(key, Buffer.from(decodeBinaryHeader(part.trim())));
    } else {
      into.add(key, value);
    }
  });
  return into;
}

/** True when Headers has no entries (avoids allocating Metadata for nothing). */
export function isEmptyHeaders(headers: Headers): boolean {
  for (const _ of headers.keys()) return false;
  return true;
}

/**
 * Headers that read single values straight from the underlying record (grpc-js
 * Metadata, or Node's http2 header object) and convert everything only when a
 * caller iterates or changes them: tracing reads three headers of every call,
 * and a full conversion per call costs microseconds (docs/pitfalls.md). A stand-in, not a
 * subclass: Node's Headers methods are instance fields in its type declarations.
 */
export class LazyHeaders implements Headers {
  readonly #lookup: (name: string) => string | null;
  readonly #convert: () => Headers;
  #headers: Headers | undefined;

  constructor(lookup: (lowerCaseName: string) => string | null, convert: () => Headers) {
    this.#lookup = lookup;
    this.#convert = convert;
  }

  #all(): Headers {
    this.#headers ??= this.#convert();
    return this.#headers;
  }

  get(name: string): string | null {
    return this.#headers !== undefined ? this.#headers.get(name) : this.#lookup(name.toLowerCase());
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }

  set(name: string, value: string): void {
    this.#all().set(name, value);
  }

  append(name: string, value: string): void {
    this.#all().append(name, value);
  }

  delete(name: string): void {
    this.#all().delete(name);
  }

  getSetCookie(): string[] {
    return this.#all().getSetCookie();
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    this.#all().forEach((value, key) => {
      callback.call(thisArg, value, key, this);
    });
  }

  entries() {
    return this.#all().entries();
  }

  keys() {
    return this.#all().keys();
  }

  values() {
    return this.#all().values();
  }

  [Symbol.iterator]() {
    return this.#all()[Symbol.iterator]();
  }
}

/** Lazy Headers over grpc-js Metadata (`-bin` values as base64, as Connect has them). */
export function metadataHeaders(metadata: Metadata): Headers {
  return new LazyHeaders(
    (key) => {
      const values = metadata.get(key);
      if (values.length === 0) return null;
      return values
        .map((v) => (typeof v === "string" ? v : key.endsWith("-bin") ? encodeBinaryHeader(v) : v.toString()))
        .join(", ");
    },
    () => metadataToHeaders(metadata),
  );
}
