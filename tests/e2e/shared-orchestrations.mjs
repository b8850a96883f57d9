// shared-orchestrations.mjs -- orchestrations registered by more than one
// process in a test (names must match across processes).
export const slowOrch = async function* slowOrch(ctx, x) {
  return yield ctx.callActivity("slowActivity", x);
};

// The activity body differs per process; its registered name must not.
export function makeSlowActivity(body) {
  const f = async (_ctx, input) => body(input);
  Object.defineProperty(f, "name", { value: "slowActivity" });
  return f;
}
