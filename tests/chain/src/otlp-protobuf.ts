/**
 * Decodes an OTLP ExportTraceServiceRequest in the protobuf encoding (what an
 * SDK sends by default, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf) into the
 * shape of the OTLP JSON encoding, so the test receiver reads both alike.
 * Field numbers from opentelemetry-proto (trace/v1, common/v1, resource/v1);
 * fields the tests do not read are skipped.
 */
import { BinaryReader } from "@bufbuild/protobuf/wire";

type Json = Record<string, unknown>;

/** Reads each field of the message in `bytes`, calling `on(fieldNo, reader, wireType)`; `on` must consume or return false. */
function fields(bytes: Uint8Array, on: (no: number, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wireType] = r.tag();
    if (!on(no, r)) r.skip(wireType, no);
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function anyValue(bytes: Uint8Array): Json {
  let value: Json = {};
  fields(bytes, (no, r) => {
    if (no === 1) value = { stringValue: r.string() };
    else if (no === 2) value = { boolValue: r.bool() };
    else if (no === 3) value = { intValue: r.int64().toString() };
    else if (no === 4) value = { doubleValue: r.double() };
    else return false;
    return true;
  });
  return value;
}

function keyValue(bytes: Uint8Array): Json {
  const kv: Json = { key: "", value: {} };
  fields(bytes, (no, r) => {
    if (no === 1) kv.key = r.string();
    else if (no === 2) kv.value = anyValue(r.bytes());
    else return false;
    return true;
  });
  return kv;
}

function event(bytes: Uint8Array): Json {
  const e: Json = { name: "", attributes: [] as Json[] };
  fields(bytes, (no, r) => {
    if (no === 2) e.name = r.string();
    else if (no === 3) (e.attributes as Json[]).push(keyValue(r.bytes()));
    else return false;
    return true;
  });
  return e;
}

function span(bytes: Uint8Array): Json {
  const s: Json = { attributes: [] as Json[], events: [] as Json[], status: {} };
  fields(bytes, (no, r) => {
    if (no === 1) s.traceId = hex(r.bytes());
    else if (no === 2) s.spanId = hex(r.bytes());
    else if (no === 3) s.traceState = r.string();
    else if (no === 4) s.parentSpanId = hex(r.bytes());
    else if (no === 5) s.name = r.string();
    else if (no === 6) s.kind = r.int32();
    else if (no === 7) s.startTimeUnixNano = r.fixed64().toString();
    else if (no === 8) s.endTimeUnixNano = r.fixed64().toString();
    else if (no === 9) (s.attributes as Json[]).push(keyValue(r.bytes()));
    else if (no === 11) (s.events as Json[]).push(event(r.bytes()));
    else if (no === 15) {
      const status: Json = {};
      fields(r.bytes(), (sno, sr) => {
        if (sno === 2) status.message = sr.string();
        else if (sno === 3) status.code = sr.int32();
        else return false;
        return true;
      });
      s.status = status;
    } else return false;
    return true;
  });
  return s;
}

/** ExportTraceServiceRequest bytes → `{ resourceSpans: [...] }` as OTLP JSON has it. */
export function decodeTraceRequest(bytes: Uint8Array): Json {
  const resourceSpans: Json[] = [];
  fields(bytes, (no, r) => {
    if (no !== 1) return false;
    const rs: Json = { resource: { attributes: [] as Json[] }, scopeSpans: [] as Json[] };
    fields(r.bytes(), (rno, rr) => {
      if (rno === 1) {
        fields(rr.bytes(), (ano, ar) => {
          if (ano !== 1) return false;
          ((rs.resource as Json).attributes as Json[]).push(keyValue(ar.bytes()));
          return true;
        });
      } else if (rno === 2) {
        const spans: Json[] = [];
        fields(rr.bytes(), (sno, sr) => {
          if (sno !== 2) return false;
          spans.push(span(sr.bytes()));
          return true;
        });
        (rs.scopeSpans as Json[]).push({ spans });
      } else return false;
      return true;
    });
    resourceSpans.push(rs);
    return true;
  });
  return { resourceSpans };
}
