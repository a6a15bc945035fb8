import { decodeBinaryHeader, encodeBinaryHeader } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";

/**
 * Conversions between grpc-js Metadata and the Fetch API Headers that the
 * Connect programming model uses. Binary (`-bin`) values are base64 in
 * Headers, as in Connect, and Buffers in Metadata, as grpc-js wants.
 * Callers convert lazily: it costs microseconds per call.
 */

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
      key.startsWith("grpc-") ||
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
 * Headers over grpc-js Metadata that reads single values straight from the
 * Metadata and converts everything only when a caller iterates or changes
 * it: tracing reads three headers of every call, and a full conversion per
 * call costs microseconds (FACTS). A stand-in, not a subclass: Node's Headers
 * methods are instance fields in its type declarations.
 */
export class MetadataHeaders implements Headers {
  #metadata: Metadata;
  #headers: Headers | undefined;

  constructor(metadata: Metadata) {
    this.#metadata = metadata;
  }

  #all(): Headers {
    this.#headers ??= metadataToHeaders(this.#metadata);
    return this.#headers;
  }

  get(name: string): string | null {
    if (this.#headers !== undefined) return this.#headers.get(name);
    const key = name.toLowerCase();
    const values = this.#metadata.get(key);
    if (values.length === 0) return null;
    return values
      .map((v) => (typeof v === "string" ? v : key.endsWith("-bin") ? encodeBinaryHeader(v) : v.toString()))
      .join(", ");
  }

  has(name: string): boolean {
    return this.#headers !== undefined ? this.#headers.has(name) : this.#metadata.get(name.toLowerCase()).length > 0;
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
