/**
 * A minimal WebAssembly module writer: enough to express small numeric kernels (nested loops over
 * f32/f64/i32 values and 128-bit SIMD) as code trees and turn them into a module that imports a
 * memory. Kernels built with it keep everything in locals: they own no memory of their own, so
 * they can run in place on another module's heap (the TF.js wasm backend's).
 */

/** A code tree: bytes, nested as the expressions are written; flattened when emitted. */
export type Code = number | readonly Code[];

function flatten(code: Code, out: number[]): void {
  if (typeof code === 'number') out.push(code);
  else for (const c of code) flatten(c, out);
}

export function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

export function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;
export type ValueType = typeof I32 | typeof F32 | typeof F64 | typeof V128;

/** Instructions as code trees; operands come first (stack order). */
export const op = {
  get: (local: number): Code => [0x20, uleb(local)],
  set: (local: number, value: Code): Code => [value, 0x21, uleb(local)],
  tee: (local: number, value: Code): Code => [value, 0x22, uleb(local)],
  i32: (n: number): Code => [0x41, sleb(n)],
  f64: (n: number): Code => {
    const bytes = new Uint8Array(new Float64Array([n]).buffer);
    return [0x44, [...bytes]];
  },
  add: (a: Code, b: Code): Code => [a, b, 0x6a],
  sub: (a: Code, b: Code): Code => [a, b, 0x6b],
  mul: (a: Code, b: Code): Code => [a, b, 0x6c],
  shl: (a: Code, b: Code): Code => [a, b, 0x74],
  divS: (a: Code, b: Code): Code => [a, b, 0x6d],
  remS: (a: Code, b: Code): Code => [a, b, 0x6f],
  eqz: (a: Code): Code => [a, 0x45],
  eq: (a: Code, b: Code): Code => [a, b, 0x46],
  ltS: (a: Code, b: Code): Code => [a, b, 0x48],
  gtS: (a: Code, b: Code): Code => [a, b, 0x4a],
  geS: (a: Code, b: Code): Code => [a, b, 0x4e],
  and: (a: Code, b: Code): Code => [a, b, 0x71],
  /** Larger/smaller of two i32 (signed). */
  maxS: (a: Code, b: Code, scratchA: number, scratchB: number): Code => [
    op.tee(scratchA, a),
    op.tee(scratchB, b),
    op.gtS(op.get(scratchA), op.get(scratchB)),
    0x1b,
  ],
  minS: (a: Code, b: Code, scratchA: number, scratchB: number): Code => [
    op.tee(scratchA, a),
    op.tee(scratchB, b),
    op.ltS(op.get(scratchA), op.get(scratchB)),
    0x1b,
  ],
  /** Byte address of element `index` of a 4-byte array at byte offset `base`. */
  at4: (base: Code, index: Code): Code => op.add(base, op.shl(index, op.i32(2))),
  at8: (base: Code, index: Code): Code => op.add(base, op.shl(index, op.i32(3))),
  f32Load: (address: Code, offset = 0): Code => [address, 0x2a, 2, uleb(offset)],
  f32Store: (address: Code, value: Code): Code => [address, value, 0x38, 2, 0],
  f64Load: (address: Code): Code => [address, 0x2b, 3, 0],
  f64Store: (address: Code, value: Code): Code => [address, value, 0x39, 3, 0],
  f32Add: (a: Code, b: Code): Code => [a, b, 0x92],
  f32Mul: (a: Code, b: Code): Code => [a, b, 0x94],
  f32Gt: (a: Code, b: Code): Code => [a, b, 0x5e],
  f64Add: (a: Code, b: Code): Code => [a, b, 0xa0],
  f64FromF32: (a: Code): Code => [a, 0xbb],
  f32FromF64: (a: Code): Code => [a, 0xb6],
  /** memory.fill(address, byte, length) */
  fill: (address: Code, byte: Code, length: Code): Code => [address, byte, length, 0xfc, uleb(11), 0],
  v128Load: (address: Code, offset = 0): Code => [address, 0xfd, uleb(0), 4, uleb(offset)],
  /** One f32 loaded into all four lanes. */
  v128Load32Splat: (address: Code, offset = 0): Code => [address, 0xfd, uleb(9), 2, uleb(offset)],
  v128Store: (address: Code, value: Code, offset = 0): Code => [
    address,
    value,
    0xfd,
    uleb(11),
    4,
    uleb(offset),
  ],
  f32x4Add: (a: Code, b: Code): Code => [a, b, 0xfd, uleb(228)],
  f32x4Sub: (a: Code, b: Code): Code => [a, b, 0xfd, uleb(229)],
  f32x4Mul: (a: Code, b: Code): Code => [a, b, 0xfd, uleb(230)],
  f32x4Splat: (a: Code): Code => [a, 0xfd, uleb(19)],
  f32x4Max: (a: Code, b: Code): Code => [a, b, 0xfd, uleb(233)],
  /** Lanes 0-1 of an f32x4 widened to f64x2. */
  f64x2FromLow: (a: Code): Code => [a, 0xfd, uleb(95)],
  f64x2Add: (a: Code, b: Code): Code => [a, b, 0xfd, uleb(240)],
  /** Lanes 2-3 moved to 0-1 (i8x16.shuffle of a with itself). */
  high64: (a: Code): Code => [
    a,
    a,
    0xfd,
    uleb(13),
    [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15],
  ],
  f32x4Demote: (a: Code): Code => [a, 0xfd, uleb(94)],
  v128Zero: (): Code => [0xfd, uleb(12), new Array<number>(16).fill(0)],
  /** Keeps the low 8 bytes of a and the low 8 bytes of b: [a0, a1, b0, b1] for f32x4 lanes. */
  joinLow: (a: Code, b: Code): Code => [
    a,
    b,
    0xfd,
    uleb(13),
    [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
  ],
  if: (cond: Code, then: Code, otherwise?: Code): Code =>
    otherwise === undefined
      ? [cond, 0x04, 0x40, then, 0x0b]
      : [cond, 0x04, 0x40, then, 0x05, otherwise, 0x0b],
  /** for (local = start; local < end; local += step) body — body must leave the stack empty. */
  for: (local: number, start: Code, end: Code, body: Code, step = 1): Code => [
    op.set(local, start),
    0x02,
    0x40,
    0x03,
    0x40,
    op.geS(op.get(local), end),
    0x0d,
    1,
    body,
    op.set(local, op.add(op.get(local), op.i32(step))),
    0x0c,
    0,
    0x0b,
    0x0b,
  ],
};

export interface FunctionSpec {
  name: string;
  params: ValueType[];
  locals: ValueType[];
  body: Code;
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(text: string): number[] {
  const bytes = [...Buffer.from(text, 'utf8')];
  return [...uleb(bytes.length), ...bytes];
}

/** A module of functions (no results) that import `env.memory`; `shared` memories need a maximum. */
export function writeModule(
  functions: FunctionSpec[],
  memory: { shared: boolean; maximumPages?: number },
): Uint8Array<ArrayBuffer> {
  const types: number[] = [...uleb(functions.length)];
  for (const f of functions) types.push(0x60, ...uleb(f.params.length), ...f.params, 0);
  const limits = memory.shared
    ? [0x03, ...uleb(1), ...uleb(memory.maximumPages ?? 65536)]
    : [0x00, ...uleb(1)];
  const imports = [...uleb(1), ...name('env'), ...name('memory'), 0x02, ...limits];
  const funcs = [...uleb(functions.length), ...functions.flatMap((_, i) => uleb(i))];
  const exports = [
    ...uleb(functions.length),
    ...functions.flatMap((f, i) => [...name(f.name), 0x00, ...uleb(i)]),
  ];
  const bodies: number[] = [...uleb(functions.length)];
  for (const f of functions) {
    const code: number[] = [];
    const groups: Array<[number, ValueType]> = [];
    for (const t of f.locals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    code.push(...uleb(groups.length));
    for (const [count, t] of groups) code.push(...uleb(count), t);
    flatten(f.body, code);
    code.push(0x0b);
    bodies.push(...uleb(code.length), ...code);
  }
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, types),
    ...section(2, imports),
    ...section(3, funcs),
    ...section(7, exports),
    ...section(10, bodies),
  ]);
}
