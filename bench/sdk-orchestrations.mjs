// sdk-orchestrations.mjs -- the orchestrations the SDK benchmarks register
// (shared by the benchmark and its worker processes).
export const hello = async function hello(_ctx, name) { return `Hello, ${name}!`; };
export const CITIES = ["Tokyo", "Seattle", "London", "Paris", "Lima"];
export const helloN = async function* helloN(ctx, n) {
  const out = [];
  for (const c of CITIES.slice(0, n)) out.push(yield ctx.callActivity(hello, c));
  return out;
};
