// pb.mjs -- a tiny protobuf encoder for tests that speak the raw wire.
export function varint(n) {
  const out = [];
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
  while (v >= 0x80n) { out.push(Number((v & 0x7fn) | 0x80n)); v >>= 7n; }
  out.push(Number(v));
  return Buffer.from(out);
}
export const key = (field, wt) => varint((field << 3) | wt);
export const bytes = (field, b) => Buffer.concat([key(field, 2), varint(b.length), b]);
export const str = (field, s) => bytes(field, Buffer.from(s, "utf8"));
export const sv = (field, s) => bytes(field, str(1, s)); // google.protobuf.StringValue
export const int = (field, n) => Buffer.concat([key(field, 0), varint(n)]);
export const msg = (...parts) => Buffer.concat(parts);

// Unary call with raw bytes; resolves {code, details} or {code: 0, res}.
export function rawUnary(grpc, client, method, body, hub) {
  const md = new grpc.Metadata();
  if (hub) md.set("taskhub", hub);
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, (b) => b, (b) => b, body, md, { deadline: Date.now() + 10000 }, (err, res) => {
      resolve(err ? { code: err.code, details: err.details } : { code: 0, res });
    });
  });
}
