import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  GetUserRequestSchema,
  GetUserResponseSchema,
  ListUsersRequestSchema,
  ListUsersResponseSchema,
} from "@demo/proto/demo/users/v1/users_pb";
import { Base64Decoder, encodeBase64 } from "../grpc/grpc-web-text.ts";
import type { RunningServer } from "../serve.ts";
import { serveUsers } from "../test-support/users.ts";

/** A request as grpc-web's generated clients send it in text mode (their default). */
function textRequest(base: string, method: string, body: string): Promise<Response> {
  return fetch(`${base}/demo.users.v1.UserService/${method}`, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web-text",
      accept: "application/grpc-web-text",
      "x-grpc-web": "1",
      "x-user-agent": "grpc-web-javascript/0.1",
    },
    body,
  });
}

function envelope(bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([0, 0, 0, 0, bytes.length]), bytes]);
}

/** The frames of a text-mode answer: messages, then the trailers frame. */
function frames(text: string): { messages: Buffer[]; trailers: Record<string, string> } {
  const bytes = Buffer.from(text, "base64");
  const messages: Buffer[] = [];
  const trailers: Record<string, string> = {};
  for (let at = 0; at < bytes.length; ) {
    const flags = bytes[at] as number;
    const length = bytes.readUInt32BE(at + 1);
    const payload = bytes.subarray(at + 5, at + 5 + length);
    at += 5 + length;
    if ((flags & 0x80) === 0) messages.push(payload);
    else
      for (const line of payload.toString("utf8").split("\r\n").filter(Boolean)) {
        const colon = line.indexOf(":");
        trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
  }
  return { messages, trailers };
}

describe("gRPC-Web text mode at the edge", () => {
  let server: RunningServer;
  let base: string;

  before(async () => {
    server = await serveUsers({ engine: "connect" });
    base = `http://127.0.0.1:${server.port}`;
  });

  after(() => server.shutdown());

  const getUser = (id: string) =>
    envelope(toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { id }))).toString("base64");

  it("answers a unary call in base64 frames, trailers included", async () => {
    const res = await textRequest(base, "GetUser", getUser("u-1"));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/grpc-web-text/);
    const { messages, trailers } = frames(await res.text());
    assert.equal(messages.length, 1);
    assert.equal(fromBinary(GetUserResponseSchema, messages[0] as Buffer).user?.id, "u-1");
    assert.equal(trailers["grpc-status"], "0");
  });

  it("streams a server-streaming call, every message and the trailers in one base64 text", async () => {
    const request = envelope(toBinary(ListUsersRequestSchema, create(ListUsersRequestSchema, {})));
    const res = await textRequest(base, "ListUsers", request.toString("base64"));
    assert.equal(res.status, 200);
    const { messages, trailers } = frames(await res.text());
    assert.equal(messages.length, 50);
    assert.deepEqual(
      messages.slice(0, 2).map((m) => fromBinary(ListUsersResponseSchema, m).user?.id),
      ["u-1", "u-2"],
    );
    assert.equal(trailers["grpc-status"], "0");
  });

  it("keeps the code and message of an error", async () => {
    const res = await textRequest(base, "GetUser", getUser("u-404"));
    const status = res.headers.get("grpc-status") ?? frames(await res.text()).trailers["grpc-status"];
    assert.equal(status, String(Code.NotFound));
  });

  it("reads a request sent as separately padded pieces (padding ending a group mid-body)", async () => {
    const bytes = Buffer.from(getUser("u-1"), "base64");
    const pieces = `${bytes.subarray(0, 4).toString("base64")}${bytes.subarray(4).toString("base64")}`;
    assert.ok(pieces.slice(0, -4).includes("="), "the first piece is padded");
    const { messages } = frames(await (await textRequest(base, "GetUser", pieces)).text());
    assert.equal(fromBinary(GetUserResponseSchema, messages[0] as Buffer).user?.id, "u-1");
  });

  it("refuses a body that is not base64 with InvalidArgument", async () => {
    const res = await textRequest(base, "GetUser", "@@@@ is not base64");
    const status = res.headers.get("grpc-status") ?? frames(await res.text()).trailers["grpc-status"];
    assert.equal(status, String(Code.InvalidArgument));
  });
});

describe("base64 streams", () => {
  it("decode the same bytes however the text is cut", () => {
    const bytes = Buffer.from(Array.from({ length: 100 }, (_, i) => (i * 37) % 256));
    const text = Buffer.from(bytes.toString("base64"));
    for (const cut of [1, 3, 4, 7, 50]) {
      const decoder = new Base64Decoder();
      const out: Buffer[] = [];
      for (let i = 0; i < text.length; i += cut) out.push(decoder.push(text.subarray(i, i + cut)));
      decoder.end();
      assert.deepEqual(Buffer.concat(out), bytes, `cut every ${cut}`);
    }
  });

  it("encode chunks as one continuous text, padded once at the end", async () => {
    const chunks = [Buffer.from([1]), Buffer.from([2, 3, 4, 5]), Buffer.from([6, 7])];
    const out: string[] = [];
    for await (const piece of encodeBase64(
      (async function* () {
        yield* chunks;
      })(),
    ))
      out.push(Buffer.from(piece).toString("latin1"));
    assert.equal(out.join(""), Buffer.concat(chunks).toString("base64"));
  });
});
