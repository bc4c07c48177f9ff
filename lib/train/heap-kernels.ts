/**
 * Training kernels compiled to WebAssembly at start-up and run in place on the TF.js
 * wasm backend's heap (they import its memory and keep everything else in locals), so a step
 * pays neither JavaScript loops nor copies in and out:
 * - maxPoolGrad: each window's first maximum (as the cpu backend picks it) receives the window's
 *   gradient; four channels at a time when the channel count allows;
 * - maxPool2x2: 2x2 max pooling with stride 2;
 * - maxPoolGradTiled / maxPoolGrad2x2: the same where windows tile the input, each value of the
 *   result written once (dy at the maximum, 0 elsewhere), with a ReLU's gradient fused in;
 * - leadingSum: sums over the leading rows of a [rows, cols] matrix (bias gradients), in f64;
 * - reluGrad: dy where the activation is positive, else 0 (the fused ReLU gradient), one pass;
 * - addRows: a bias added over the last axis, one pass;
 * - adam: one Adam step of a variable (moments in place, new values beside);
 * - convForward: Conv2D with the bias and ReLU fused into its stores;
 * - convFilterGrad / convInputGrad: the two Conv2D gradients as register-blocked SIMD loops
 *   (every convolution kernel takes the parameters CONV_PARAMS describes);
 * - winogradInput / winogradOutput / winogradOutputGrad: the tile transforms of Winograd
 *   F(2x2, 3x3) for 3x3 stride-1 convolutions and their filter gradient (the products between
 *   them run on convForward and convFilterGrad as 1x1 convolutions).
 * Addresses are byte offsets on the shared heap; shapes and strides are element counts.
 */
import {
  F32,
  I32,
  V128,
  op,
  uleb,
  writeModule,
  type Code,
  type FunctionSpec,
  type ValueType,
} from './wasm-module';

const { get, set, i32, add, sub, mul, at4, at8 } = op;

/** Parameters and locals of maxPoolGrad, by index. */
const P = {
  x: 0,
  dy: 1,
  dx: 2,
  batch: 3,
  inH: 4,
  inW: 5,
  c: 6,
  outH: 7,
  outW: 8,
  sh: 9,
  sw: 10,
  fh: 11,
  fw: 12,
  top: 13,
  left: 14,
  // locals
  n: 15,
  oh: 16,
  ow: 17,
  hs: 18,
  he: 19,
  ws: 20,
  we: 21,
  g: 22,
  k: 23,
  h: 24,
  w: 25,
  p: 26,
  at: 27,
  s1: 28,
  s2: 29,
  rowC: 30,
  hBase: 31,
  first: 32,
  // f32 (scalar) or v128 (vector) locals
  best: 33,
  v: 34,
  // vector only
  atV: 35,
  mask: 36,
  lane: 37,
} as const;

const POOL_PARAMS = new Array<typeof I32>(15).fill(I32);

/** The loops over batch and windows around `perWindow`, with hs/he/ws/we/g/first set. */
function windows(perWindow: Code): Code {
  return [
    op.fill(get(P.dx), i32(0), mul(mul(mul(mul(get(P.batch), get(P.inH)), get(P.inW)), get(P.c)), i32(4))),
    set(P.rowC, mul(get(P.inW), get(P.c))),
    op.for(
      P.n,
      i32(0),
      get(P.batch),
      op.for(P.oh, i32(0), get(P.outH), [
        set(P.hs, op.maxS(sub(mul(get(P.oh), get(P.sh)), get(P.top)), i32(0), P.s1, P.s2)),
        set(
          P.he,
          op.minS(add(sub(mul(get(P.oh), get(P.sh)), get(P.top)), get(P.fh)), get(P.inH), P.s1, P.s2),
        ),
        op.for(P.ow, i32(0), get(P.outW), [
          set(P.ws, op.maxS(sub(mul(get(P.ow), get(P.sw)), get(P.left)), i32(0), P.s1, P.s2)),
          set(
            P.we,
            op.minS(add(sub(mul(get(P.ow), get(P.sw)), get(P.left)), get(P.fw)), get(P.inW), P.s1, P.s2),
          ),
          op.if(op.and(op.ltS(get(P.hs), get(P.he)), op.ltS(get(P.ws), get(P.we))), [
            set(
              P.g,
              mul(add(mul(add(mul(get(P.n), get(P.outH)), get(P.oh)), get(P.outW)), get(P.ow)), get(P.c)),
            ),
            set(
              P.first,
              add(mul(add(mul(get(P.n), get(P.inH)), get(P.hs)), get(P.rowC)), mul(get(P.ws), get(P.c))),
            ),
            perWindow,
          ]),
        ]),
      ]),
    ),
  ];
}

/** One channel at a time. */
const maxPoolGradScalar: FunctionSpec = {
  name: 'maxPoolGrad',
  params: POOL_PARAMS,
  locals: [...new Array<typeof I32>(18).fill(I32), F32, F32],
  body: windows(
    op.for(P.k, i32(0), get(P.c), [
      set(P.at, add(get(P.first), get(P.k))),
      set(P.best, op.f32Load(at4(get(P.x), get(P.at)))),
      op.for(P.h, get(P.hs), get(P.he), [
        set(P.hBase, add(mul(add(mul(get(P.n), get(P.inH)), get(P.h)), get(P.rowC)), get(P.k))),
        op.for(P.w, get(P.ws), get(P.we), [
          set(P.p, add(get(P.hBase), mul(get(P.w), get(P.c)))),
          set(P.v, op.f32Load(at4(get(P.x), get(P.p)))),
          op.if(op.f32Gt(get(P.v), get(P.best)), [set(P.best, get(P.v)), set(P.at, get(P.p))]),
        ]),
      ]),
      op.f32Store(
        at4(get(P.dx), get(P.at)),
        op.f32Add(op.f32Load(at4(get(P.dx), get(P.at))), op.f32Load(at4(get(P.dy), add(get(P.g), get(P.k))))),
      ),
    ]),
  ),
};

const simd = (code: number): Code => [0xfd, ...uleb(code)];
const i32x4Splat = (a: Code): Code => [a, simd(17)];
const i32x4Add = (a: Code, b: Code): Code => [a, b, simd(174)];
const f32x4Gt = (a: Code, b: Code): Code => [a, b, simd(68)];
const bitselect = (a: Code, b: Code, mask: Code): Code => [a, b, mask, simd(82)];
const i32x4Lane = (a: Code, lane: number): Code => [a, simd(27), lane];
const f32x4Lane = (a: Code, lane: number): Code => [a, simd(31), lane];

/** Four channels at a time (the channel count divides by 4): maxima and their indices as vectors. */
const maxPoolGradVector: FunctionSpec = {
  name: 'maxPoolGrad4',
  params: POOL_PARAMS,
  locals: [...new Array<typeof I32>(18).fill(I32), V128, V128, V128, V128, V128],
  body: windows([
    // lane offsets 0..3 as i32x4
    set(P.lane, [0xfd, uleb(12), [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]]),
    op.for(
      P.k,
      i32(0),
      get(P.c),
      [
        set(P.at, add(get(P.first), get(P.k))),
        set(P.best, op.v128Load(at4(get(P.x), get(P.at)))),
        set(P.atV, i32x4Add(i32x4Splat(get(P.at)), get(P.lane))),
        op.for(P.h, get(P.hs), get(P.he), [
          set(P.hBase, add(mul(add(mul(get(P.n), get(P.inH)), get(P.h)), get(P.rowC)), get(P.k))),
          op.for(P.w, get(P.ws), get(P.we), [
            set(P.p, add(get(P.hBase), mul(get(P.w), get(P.c)))),
            set(P.v, op.v128Load(at4(get(P.x), get(P.p)))),
            set(P.mask, f32x4Gt(get(P.v), get(P.best))),
            set(P.best, bitselect(get(P.v), get(P.best), get(P.mask))),
            set(P.atV, bitselect(i32x4Add(i32x4Splat(get(P.p)), get(P.lane)), get(P.atV), get(P.mask))),
          ]),
        ]),
        set(P.v, op.v128Load(at4(get(P.dy), add(get(P.g), get(P.k))))),
        ...[0, 1, 2, 3].map((lane) => [
          set(P.at, i32x4Lane(get(P.atV), lane)),
          op.f32Store(
            at4(get(P.dx), get(P.at)),
            op.f32Add(op.f32Load(at4(get(P.dx), get(P.at))), f32x4Lane(get(P.v), lane)),
          ),
        ]),
      ],
      4,
    ),
  ]),
};

/**
 * maxPoolGradTiled(x, dy, dx, batch, inH, inW, c, outH, outW, fh, fw, relu): the pooling
 * gradient where windows tile the input without overlap or padding (stride = window, as 2x2
 * pooling after a convolution) and channels come in fours. Each window is read twice, four
 * channels at a time: once for the tap of the first maximum, once to write dy there and 0 at
 * every other tap, so each covered value of dx is written once (no zeroing pass, no scatter);
 * rows and columns past the last window are zeroed. With `relu` 1 (x is a ReLU's output) a
 * window whose maximum is not positive passes 0 (the ReLU's gradient fused in).
 */
const T = {
  x: 0,
  dy: 1,
  dx: 2,
  batch: 3,
  inH: 4,
  inW: 5,
  c: 6,
  outH: 7,
  outW: 8,
  fh: 9,
  fw: 10,
  relu: 11,
  // locals
  n: 12,
  oh: 13,
  ow: 14,
  k: 15,
  h: 16,
  w: 17,
  t: 18,
  first: 19,
  g: 20,
  rowC: 21,
  p: 22,
  best: 23,
  v: 24,
  mask: 25,
  idx: 26,
  d: 27,
} as const;
const i32x4Eq = (a: Code, b: Code): Code => [a, b, simd(55)];
const maxPoolGradTiled: FunctionSpec = (() => {
  const overTaps = (body: Code): Code => [
    set(T.t, i32(0)),
    op.for(
      T.h,
      i32(0),
      get(T.fh),
      op.for(T.w, i32(0), get(T.fw), [
        set(
          T.p,
          at4(
            get(T.dx),
            add(add(add(get(T.first), get(T.k)), mul(get(T.h), get(T.rowC))), mul(get(T.w), get(T.c))),
          ),
        ),
        body,
        set(T.t, add(get(T.t), i32(1))),
      ]),
    ),
  ];
  // T.p addresses dx; x sits at the same element offset from its own base.
  const xAt = (): Code => add(get(T.x), sub(get(T.p), get(T.dx)));
  return {
    name: 'maxPoolGradTiled',
    params: new Array<typeof I32>(12).fill(I32),
    locals: [...new Array<typeof I32>(11).fill(I32), V128, V128, V128, V128, V128],
    body: [
      op.if(
        op.and(
          op.eq(get(T.inH), mul(get(T.outH), get(T.fh))),
          op.eq(get(T.inW), mul(get(T.outW), get(T.fw))),
        ),
        [],
        op.fill(
          get(T.dx),
          i32(0),
          mul(mul(mul(mul(get(T.batch), get(T.inH)), get(T.inW)), get(T.c)), i32(4)),
        ),
      ),
      set(T.rowC, mul(get(T.inW), get(T.c))),
      op.for(
        T.n,
        i32(0),
        get(T.batch),
        op.for(
          T.oh,
          i32(0),
          get(T.outH),
          op.for(T.ow, i32(0), get(T.outW), [
            set(
              T.first,
              add(
                mul(add(mul(get(T.n), get(T.inH)), mul(get(T.oh), get(T.fh))), get(T.rowC)),
                mul(mul(get(T.ow), get(T.fw)), get(T.c)),
              ),
            ),
            set(
              T.g,
              mul(add(mul(add(mul(get(T.n), get(T.outH)), get(T.oh)), get(T.outW)), get(T.ow)), get(T.c)),
            ),
            op.for(
              T.k,
              i32(0),
              get(T.c),
              [
                set(T.best, op.v128Load(at4(get(T.x), add(get(T.first), get(T.k))))),
                set(T.idx, op.v128Zero()),
                overTaps([
                  set(T.v, op.v128Load(xAt(), 0)),
                  set(T.mask, f32x4Gt(get(T.v), get(T.best))),
                  set(T.best, bitselect(get(T.v), get(T.best), get(T.mask))),
                  set(T.idx, bitselect(i32x4Splat(get(T.t)), get(T.idx), get(T.mask))),
                ]),
                set(T.d, op.v128Load(at4(get(T.dy), add(get(T.g), get(T.k))))),
                op.if(get(T.relu), [
                  set(T.d, bitselect(get(T.d), op.v128Zero(), f32x4Gt(get(T.best), op.v128Zero()))),
                ]),
                overTaps(
                  op.v128Store(
                    get(T.p),
                    bitselect(get(T.d), op.v128Zero(), i32x4Eq(get(T.idx), i32x4Splat(get(T.t)))),
                  ),
                ),
              ],
              4,
            ),
          ]),
        ),
      ),
    ],
  };
})();

/**
 * The walk of both 2x2 pooling kernels over their windows: `xb` the byte address of a window's
 * first input value, `o` the byte offset of four channels in it (the taps sit `c4` bytes apart
 * across, `r4` down), `out` (their output's address, advanced by `c4` a window) and `perRow` /
 * `perWindow` for any further pointers.
 */
function over2x2Windows(
  at: { x: number; batch: number; inH: number; inW: number; c: number; outH: number; outW: number },
  l: { n: number; oh: number; ow: number; o: number; xb: number; c4: number; r4: number; out: number },
  perVector: Code,
  perRow: Code = [],
  perWindow: Code = [],
): Code {
  return [
    set(l.c4, mul(get(at.c), i32(4))),
    set(l.r4, mul(mul(get(at.inW), get(at.c)), i32(4))),
    op.for(
      l.n,
      i32(0),
      get(at.batch),
      op.for(l.oh, i32(0), get(at.outH), [
        set(
          l.xb,
          at4(
            get(at.x),
            mul(add(mul(get(l.n), get(at.inH)), mul(get(l.oh), i32(2))), mul(get(at.inW), get(at.c))),
          ),
        ),
        perRow,
        op.for(l.ow, i32(0), get(at.outW), [
          op.for(l.o, i32(0), get(l.c4), perVector, 16),
          set(l.xb, add(get(l.xb), mul(get(l.c4), i32(2)))),
          set(l.out, add(get(l.out), get(l.c4))),
          perWindow,
        ]),
      ]),
    ),
  ];
}

/**
 * maxPoolGrad2x2: maxPoolGradTiled (the same parameters, then `sums`) for 2x2 windows, unrolled:
 * the four taps' first maximum found by three compares, dy masked into each tap's store. With
 * `sums` (else 0) the address of c f64 values, it also sums dx over all but the channel axis
 * (the gradient of a bias before the ReLU) as it goes.
 */
const maxPoolGrad2x2: FunctionSpec = (() => {
  // One more parameter than maxPoolGradTiled (sums), so every local sits one further.
  const sums = T.relu + 1;
  const L = {
    o: T.k + 1,
    xb: T.h + 1,
    db: T.w + 1,
    gb: T.t + 1,
    c4: T.first + 1,
    r4: T.g + 1,
    q: T.p + 1,
    s: T.rowC + 1,
    n: T.n + 1,
    oh: T.oh + 1,
    ow: T.ow + 1,
  };
  // Vector locals: four taps, three masks, best, d.
  const V = T.best + 1;
  const v = (i: number): number => V + i;
  const m1 = V + 4;
  const m2 = V + 5;
  const m3 = V + 6;
  const best = V + 7;
  const d = V + 8;
  const vAnd = (a: Code, b: Code): Code => [a, b, simd(78)];
  const vAndNot = (a: Code, b: Code): Code => [a, b, simd(79)];
  const vOr = (a: Code, b: Code): Code => [a, b, simd(80)];
  const vNot = (a: Code): Code => [a, simd(77)];
  const perVector: Code = [
    set(L.q, add(get(L.xb), get(L.o))),
    set(v(0), op.v128Load(get(L.q))),
    set(v(1), op.v128Load(add(get(L.q), get(L.c4)))),
    set(L.q, add(get(L.q), get(L.r4))),
    set(v(2), op.v128Load(get(L.q))),
    set(v(3), op.v128Load(add(get(L.q), get(L.c4)))),
    set(m1, f32x4Gt(get(v(1)), get(v(0)))),
    set(best, bitselect(get(v(1)), get(v(0)), get(m1))),
    set(m2, f32x4Gt(get(v(2)), get(best))),
    set(best, bitselect(get(v(2)), get(best), get(m2))),
    set(m3, f32x4Gt(get(v(3)), get(best))),
    set(best, bitselect(get(v(3)), get(best), get(m3))),
    set(d, op.v128Load(add(get(L.gb), get(L.o)))),
    op.if(get(T.relu), [set(d, vAnd(get(d), f32x4Gt(get(best), op.v128Zero())))]),
    // The winning tap: the last that beat the running maximum.
    set(L.q, add(get(L.db), get(L.o))),
    op.v128Store(add(get(L.q), get(L.r4)), vAnd(get(d), vAndNot(get(m2), get(m3)))),
    op.v128Store(add(add(get(L.q), get(L.r4)), get(L.c4)), vAnd(get(d), get(m3))),
    set(m2, vOr(get(m2), get(m3))),
    op.v128Store(add(get(L.q), get(L.c4)), vAnd(get(d), vAndNot(get(m1), get(m2)))),
    op.v128Store(get(L.q), vAnd(get(d), vNot(vOr(get(m1), get(m2))))),
    // Each window's (masked) dy lands on one value of dx: their sums are dx's channel sums.
    op.if(get(sums), [
      set(L.s, add(get(sums), mul(get(L.o), i32(2)))),
      op.v128Store(get(L.s), op.f64x2Add(op.v128Load(get(L.s)), op.f64x2FromLow(get(d)))),
      op.v128Store(get(L.s), op.f64x2Add(op.v128Load(get(L.s), 16), op.f64x2FromLow(op.high64(get(d)))), 16),
    ]),
  ];
  return {
    name: 'maxPoolGrad2x2',
    params: new Array<typeof I32>(13).fill(I32),
    locals: [...new Array<typeof I32>(11).fill(I32), ...new Array<typeof V128>(9).fill(V128)],
    body: [
      op.if(get(sums), op.fill(get(sums), i32(0), mul(get(T.c), i32(8)))),
      op.if(
        op.and(op.eq(get(T.inH), mul(get(T.outH), i32(2))), op.eq(get(T.inW), mul(get(T.outW), i32(2)))),
        [],
        op.fill(
          get(T.dx),
          i32(0),
          mul(mul(mul(mul(get(T.batch), get(T.inH)), get(T.inW)), get(T.c)), i32(4)),
        ),
      ),
      set(L.gb, get(T.dy)),
      over2x2Windows(
        T,
        { ...L, out: L.gb },
        perVector,
        set(L.db, add(get(T.dx), sub(get(L.xb), get(T.x)))),
        set(L.db, add(get(L.db), mul(get(L.c4), i32(2)))),
      ),
    ],
  };
})();

/**
 * maxPool2x2(x, out, batch, inH, inW, c, outH, outW): 2x2 max pooling with stride 2 and no
 * padding, channels in fours; each window's maximum as the gradient kernels pick it (a later tap
 * wins only when greater).
 */
const maxPool2x2: FunctionSpec = (() => {
  const Q = { x: 0, out: 1, batch: 2, inH: 3, inW: 4, c: 5, outH: 6, outW: 7 } as const;
  const L = { n: 8, oh: 9, ow: 10, o: 11, xb: 12, c4: 13, r4: 14, q: 15, ob: 16, best: 17, v: 18 } as const;
  const greater = (a: Code): Code => [
    set(L.v, a),
    set(L.best, bitselect(get(L.v), get(L.best), f32x4Gt(get(L.v), get(L.best)))),
  ];
  return {
    name: 'maxPool2x2',
    params: new Array<typeof I32>(8).fill(I32),
    locals: [...new Array<typeof I32>(9).fill(I32), V128, V128],
    body: [
      set(L.ob, get(Q.out)),
      over2x2Windows(Q, { ...L, out: L.ob }, [
        set(L.q, add(get(L.xb), get(L.o))),
        set(L.best, op.v128Load(get(L.q))),
        greater(op.v128Load(add(get(L.q), get(L.c4)))),
        set(L.q, add(get(L.q), get(L.r4))),
        greater(op.v128Load(get(L.q))),
        greater(op.v128Load(add(get(L.q), get(L.c4)))),
        op.v128Store(add(get(L.ob), get(L.o)), get(L.best)),
      ]),
    ],
  };
})();

/** Parameters and locals of the sums: x, out, rows, cols, scratch (cols f64), r, c, base. */
const S = { x: 0, out: 1, rows: 2, cols: 3, scratch: 4, r: 5, c: 6, base: 7, v: 8 } as const;

const leadingSum: FunctionSpec = {
  name: 'leadingSum',
  params: [I32, I32, I32, I32, I32],
  locals: [I32, I32, I32],
  body: [
    op.fill(get(S.scratch), i32(0), mul(get(S.cols), i32(8))),
    op.for(S.r, i32(0), get(S.rows), [
      set(S.base, mul(get(S.r), get(S.cols))),
      op.for(
        S.c,
        i32(0),
        get(S.cols),
        op.f64Store(
          at8(get(S.scratch), get(S.c)),
          op.f64Add(
            op.f64Load(at8(get(S.scratch), get(S.c))),
            op.f64FromF32(op.f32Load(at4(get(S.x), add(get(S.base), get(S.c))))),
          ),
        ),
      ),
    ]),
    op.for(
      S.c,
      i32(0),
      get(S.cols),
      op.f32Store(at4(get(S.out), get(S.c)), op.f32FromF64(op.f64Load(at8(get(S.scratch), get(S.c))))),
    ),
  ],
};

/** The same, four columns at a time (cols divides by 4), two f64x2 accumulators per four columns. */
const leadingSum4: FunctionSpec = {
  name: 'leadingSum4',
  params: [I32, I32, I32, I32, I32],
  locals: [I32, I32, I32, V128],
  body: [
    op.fill(get(S.scratch), i32(0), mul(get(S.cols), i32(8))),
    op.for(S.r, i32(0), get(S.rows), [
      set(S.base, mul(get(S.r), get(S.cols))),
      op.for(
        S.c,
        i32(0),
        get(S.cols),
        [
          set(S.v, op.v128Load(at4(get(S.x), add(get(S.base), get(S.c))))),
          op.v128Store(
            at8(get(S.scratch), get(S.c)),
            op.f64x2Add(op.v128Load(at8(get(S.scratch), get(S.c))), op.f64x2FromLow(get(S.v))),
          ),
          op.v128Store(
            add(at8(get(S.scratch), get(S.c)), i32(16)),
            op.f64x2Add(
              op.v128Load(add(at8(get(S.scratch), get(S.c)), i32(16))),
              op.f64x2FromLow(op.high64(get(S.v))),
            ),
          ),
        ],
        4,
      ),
    ]),
    op.for(
      S.c,
      i32(0),
      get(S.cols),
      op.f32Store(at4(get(S.out), get(S.c)), op.f32FromF64(op.f64Load(at8(get(S.scratch), get(S.c))))),
    ),
  ],
};

/** reluGrad(dy, y, out, count): out = y > 0 ? dy : 0, four at a time with a scalar tail. */
const R = { dy: 0, y: 1, out: 2, count: 3, i: 4, end: 5 } as const;
const f32x4Zero = (): Code => op.v128Zero();
const reluGrad: FunctionSpec = {
  name: 'reluGrad',
  params: [I32, I32, I32, I32],
  locals: [I32, I32],
  body: [
    set(R.end, op.and(get(R.count), i32(-4))),
    op.for(
      R.i,
      i32(0),
      get(R.end),
      op.v128Store(at4(get(R.out), get(R.i)), [
        op.v128Load(at4(get(R.dy), get(R.i))),
        op.v128Zero(),
        f32x4Gt(op.v128Load(at4(get(R.y), get(R.i))), f32x4Zero()),
        simd(82),
      ]),
      4,
    ),
    op.for(
      R.i,
      get(R.end),
      get(R.count),
      op.f32Store(at4(get(R.out), get(R.i)), [
        op.f32Load(at4(get(R.dy), get(R.i))),
        [0x43, 0, 0, 0, 0],
        op.f32Gt(op.f32Load(at4(get(R.y), get(R.i))), [0x43, 0, 0, 0, 0]),
        0x1b,
      ]),
    ),
  ],
};

/** addRows(x, b, out, rows, cols): out[r, c] = x[r, c] + b[c] (a bias over the last axis), cols in fours. */
const B = { x: 0, b: 1, out: 2, rows: 3, cols: 4, r: 5, c: 6, base: 7 } as const;
const addRows: FunctionSpec = {
  name: 'addRows',
  params: [I32, I32, I32, I32, I32],
  locals: [I32, I32, I32],
  body: op.for(B.r, i32(0), get(B.rows), [
    set(B.base, mul(get(B.r), get(B.cols))),
    op.for(
      B.c,
      i32(0),
      get(B.cols),
      op.v128Store(
        at4(get(B.out), add(get(B.base), get(B.c))),
        op.f32x4Add(
          op.v128Load(at4(get(B.x), add(get(B.base), get(B.c)))),
          op.v128Load(at4(get(B.b), get(B.c))),
        ),
      ),
      4,
    ),
  ]),
};

/**
 * adam(g, x, m, v, outX, count, beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, -lr,
 * epsilon): one Adam step of `count` (a multiple of 4) values, tf.train.adam's arithmetic in f32:
 * m and v updated in place, the new values written to outX.
 */
const A = {
  g: 0,
  x: 1,
  m: 2,
  v: 3,
  outX: 4,
  count: 5,
  // f32 parameters, then their splats (v128 locals) at the same order from `splats`
  beta1: 6,
  i: 14,
  splats: 15,
  grad: 23,
  m1: 24,
  v1: 25,
} as const;
const ADAM_SCALARS = 8;
const f32x4Div = (a: Code, b: Code): Code => [a, b, simd(231)];
const f32x4Sqrt = (a: Code): Code => [a, simd(227)];
const adam: FunctionSpec = (() => {
  const splat = (k: number): Code => get(A.splats + k);
  const [beta1, oneMinusBeta1, beta2, oneMinusBeta2, c1, c2, negLr, epsilon] = [0, 1, 2, 3, 4, 5, 6, 7].map(
    splat,
  );
  const at = (base: number): Code => at4(get(base), get(A.i));
  return {
    name: 'adam',
    params: [I32, I32, I32, I32, I32, I32, ...new Array<typeof F32>(ADAM_SCALARS).fill(F32)],
    locals: [I32, ...new Array<typeof V128>(ADAM_SCALARS + 3).fill(V128)],
    body: [
      Array.from({ length: ADAM_SCALARS }, (_, k) => set(A.splats + k, op.f32x4Splat(get(A.beta1 + k)))),
      op.for(
        A.i,
        i32(0),
        get(A.count),
        [
          set(A.grad, op.v128Load(at(A.g))),
          set(
            A.m1,
            op.f32x4Add(op.f32x4Mul(op.v128Load(at(A.m)), beta1), op.f32x4Mul(get(A.grad), oneMinusBeta1)),
          ),
          set(
            A.v1,
            op.f32x4Add(
              op.f32x4Mul(op.v128Load(at(A.v)), beta2),
              op.f32x4Mul(op.f32x4Mul(get(A.grad), get(A.grad)), oneMinusBeta2),
            ),
          ),
          op.v128Store(at(A.m), get(A.m1)),
          op.v128Store(at(A.v), get(A.v1)),
          op.v128Store(
            at(A.outX),
            op.f32x4Add(
              op.v128Load(at(A.x)),
              op.f32x4Mul(
                f32x4Div(f32x4Div(get(A.m1), c1), op.f32x4Add(f32x4Sqrt(f32x4Div(get(A.v1), c2)), epsilon)),
                negLr,
              ),
            ),
          ),
        ],
        4,
      ),
    ],
  };
})();

/**
 * Every convolution kernel takes the same parameters, in this order: the byte addresses of its two
 * operands and of its result, then the convolution's shape in element counts (input and output
 * height/width/channels, filter size, strides, dilations, and the padding before the first row
 * and column). A kernel may add parameters after these and ignores the ones it has no use for.
 */
export const CONV_PARAMS = [
  'a',
  'b',
  'out',
  'batch',
  'inH',
  'inW',
  'cin',
  'outH',
  'outW',
  'cout',
  'fh',
  'fw',
  'sh',
  'sw',
  'dh',
  'dw',
  'top',
  'left',
] as const;

type ConvParam = (typeof CONV_PARAMS)[number];

/** A convolution's shape, as every convolution kernel takes it. */
export type ConvShape = Record<Exclude<ConvParam, 'a' | 'b' | 'out'>, number>;

/** The arguments of a convolution kernel call, in CONV_PARAMS order. */
export function convArgs(a: number, b: number, out: number, shape: ConvShape): number[] {
  const addresses = { a, b, out };
  return CONV_PARAMS.map((name) =>
    name in addresses ? addresses[name as 'a'] : shape[name as keyof ConvShape],
  );
}

/**
 * The indices of a convolution kernel's parameters (CONV_PARAMS, then `extra`) and of its i32
 * locals (`ints`), its parameter and local types (`vectors` v128 locals follow the i32 ones, from
 * index `vector`).
 */
function convFrame<E extends string, L extends string>(
  extra: readonly E[],
  ints: readonly L[],
  vectors: number,
): Pick<FunctionSpec, 'params' | 'locals'> & { at: Record<ConvParam | E | L, number>; vector: number } {
  const names = [...CONV_PARAMS, ...extra, ...ints];
  const at = Object.fromEntries(names.map((name, i) => [name, i])) as Record<ConvParam | E | L, number>;
  return {
    at,
    vector: names.length,
    params: new Array<ValueType>(CONV_PARAMS.length + extra.length).fill(I32),
    locals: [...new Array<ValueType>(ints.length).fill(I32), ...new Array<ValueType>(vectors).fill(V128)],
  };
}

/** Element index ((i * d1 + i1) * d2 + i2) * ... of a row-major array, as code. */
function index(first: Code, ...pairs: Array<[Code, Code]>): Code {
  return pairs.reduce((acc, [size, i]) => add(mul(acc, size), i), first);
}

/**
 * conv2d: y[n, oh, ow, co] = act(bias[co] + sum over kh, kw, ci of
 * x[n, oh*sh + kh*dh, ow*sw + kw*dw, ci] * w[kh, kw, ci, co]) for an input already padded (a = x,
 * b = w), with the bias (address `bias`, 0 for none) and ReLU (`relu` 1) fused into the store.
 * Each block keeps `positions` neighbouring outputs of a row x `outVectors` x 4 output channels in
 * registers; input values are broadcast, filter rows loaded four channels at a time. Without
 * dilation across a row the taps of a filter row read one contiguous run of fw x cin values, so
 * the inner loop runs over that whole run. The last block of a row starts at outW - positions
 * (recomputing a few outputs) so that no row needs a tail loop.
 */
function convForward(positions: number, outVectors: number): FunctionSpec {
  const offsets = Array.from({ length: positions }, (_, i) => `off${i}`);
  const frame = convFrame(
    ['bias', 'relu'],
    [
      'n',
      'oh',
      'ow',
      'ow0',
      'co',
      'kh',
      'kw',
      'k',
      'px',
      'pw',
      'wstep',
      'ostep',
      'run',
      'taps',
      'pout',
      ...offsets,
    ],
    1 + outVectors + positions * outVectors,
  );
  const C = frame.at;
  const s = frame.vector;
  const bv = (j: number): number => frame.vector + 1 + j;
  const acc = (i: number, j: number): number => frame.vector + 1 + outVectors + i * outVectors + j;
  const off = (i: number): number => C[offsets[i] as keyof typeof C];
  const accs: number[] = [];
  for (let i = 0; i < positions; i++) for (let j = 0; j < outVectors; j++) accs.push(acc(i, j));

  const perTap: Code[] = [];
  for (let j = 0; j < outVectors; j++) perTap.push(set(bv(j), op.v128Load(get(C.pw), 16 * j)));
  for (let i = 0; i < positions; i++) {
    perTap.push(set(s, op.v128Load32Splat(i === 0 ? get(C.px) : add(get(C.px), get(off(i))))));
    for (let j = 0; j < outVectors; j++) {
      perTap.push(set(acc(i, j), op.f32x4Add(get(acc(i, j)), op.f32x4Mul(get(s), get(bv(j))))));
    }
  }
  perTap.push(set(C.px, add(get(C.px), i32(4))), set(C.pw, add(get(C.pw), get(C.wstep))));

  const start: Code[] = [
    op.if(
      get(C.bias),
      Array.from({ length: outVectors }, (_, j) =>
        set(bv(j), op.v128Load(at4(get(C.bias), get(C.co)), 16 * j)),
      ),
      Array.from({ length: outVectors }, (_, j) => set(bv(j), op.v128Zero())),
    ),
    ...accs.map((a, k) => set(a, get(bv(k % outVectors)))),
  ];
  const store: Code[] = [
    op.if(
      get(C.relu),
      accs.map((a) => set(a, op.f32x4Max(get(a), op.v128Zero()))),
    ),
    set(
      C.pout,
      at4(
        get(C.out),
        add(
          mul(index(get(C.n), [get(C.outH), get(C.oh)], [get(C.outW), get(C.ow0)]), get(C.cout)),
          get(C.co),
        ),
      ),
    ),
  ];
  for (let i = 0; i < positions; i++) {
    for (let j = 0; j < outVectors; j++) store.push(op.v128Store(get(C.pout), get(acc(i, j)), 16 * j));
    if (i < positions - 1) store.push(set(C.pout, add(get(C.pout), get(C.ostep))));
  }
  return {
    name: `convForward${positions}x${outVectors * 4}`,
    params: frame.params,
    locals: frame.locals,
    body: [
      set(C.wstep, mul(get(C.cout), i32(4))),
      set(C.ostep, mul(get(C.cout), i32(4))),
      op.if(
        op.eq(get(C.dw), i32(1)),
        [set(C.taps, i32(1)), set(C.run, mul(get(C.fw), get(C.cin)))],
        [set(C.taps, get(C.fw)), set(C.run, get(C.cin))],
      ),
      ...offsets.map((name, i) => set(off(i), mul(mul(mul(get(C.sw), get(C.cin)), i32(4)), i32(i)))),
      op.for(
        C.n,
        i32(0),
        get(C.batch),
        op.for(
          C.oh,
          i32(0),
          get(C.outH),
          op.for(
            C.ow,
            i32(0),
            get(C.outW),
            [
              set(C.ow0, op.minS(get(C.ow), sub(get(C.outW), i32(positions)), C.px, C.pw)),
              op.for(
                C.co,
                i32(0),
                get(C.cout),
                [
                  ...start,
                  op.for(
                    C.kh,
                    i32(0),
                    get(C.fh),
                    op.for(C.kw, i32(0), get(C.taps), [
                      set(
                        C.px,
                        at4(
                          get(C.a),
                          mul(
                            index(
                              get(C.n),
                              [get(C.inH), add(mul(get(C.oh), get(C.sh)), mul(get(C.kh), get(C.dh)))],
                              [get(C.inW), add(mul(get(C.ow0), get(C.sw)), mul(get(C.kw), get(C.dw)))],
                            ),
                            get(C.cin),
                          ),
                        ),
                      ),
                      set(
                        C.pw,
                        at4(
                          get(C.b),
                          add(
                            mul(mul(index(get(C.kh), [get(C.fw), get(C.kw)]), get(C.cin)), get(C.cout)),
                            get(C.co),
                          ),
                        ),
                      ),
                      op.for(C.k, i32(0), get(C.run), perTap),
                    ]),
                  ),
                  ...store,
                ],
                outVectors * 4,
              ),
            ],
            positions,
          ),
        ),
      ),
    ],
  };
}

/**
 * convFilterGrad: dW[kh, kw, ci, co] = sum over n, oh, ow of
 * x[n, oh*sh + kh*dh, ow*sw + kw*dw, ci] * dy[n, oh, ow, co], for an input already padded
 * (a = x, b = dy). Each pass keeps a block of `inBlock` input channels x `outVectors` x 4 output
 * channels in registers and runs over every output position: input values broadcast, dy rows
 * loaded four at a time. Without dilation across a row, a filter row's taps are one run of
 * fw x cin input values (as in convForward), blocked as if they were channels: one input channel
 * then still fills a block of three.
 */
function convFilterGrad(inBlock: number, outVectors: number): FunctionSpec {
  const frame = convFrame(
    [],
    ['kh', 'kw', 'ci', 'co', 'n', 'oh', 'ow', 'px', 'pd', 'xstep', 'dstep', 'pout', 'taps', 'run'],
    1 + outVectors + inBlock * outVectors,
  );
  const C = frame.at;
  const s = frame.vector;
  const dv = (j: number): number => frame.vector + 1 + j;
  const acc = (i: number, j: number): number => frame.vector + 1 + outVectors + i * outVectors + j;
  const accs: number[] = [];
  for (let i = 0; i < inBlock; i++) for (let j = 0; j < outVectors; j++) accs.push(acc(i, j));
  const perPosition: Code[] = [];
  for (let j = 0; j < outVectors; j++) perPosition.push(set(dv(j), op.v128Load(get(C.pd), 16 * j)));
  for (let i = 0; i < inBlock; i++) {
    perPosition.push(set(s, op.f32x4Splat(op.f32Load(get(C.px), 4 * i))));
    for (let j = 0; j < outVectors; j++) {
      perPosition.push(set(acc(i, j), op.f32x4Add(get(acc(i, j)), op.f32x4Mul(get(s), get(dv(j))))));
    }
  }
  perPosition.push(set(C.px, add(get(C.px), get(C.xstep))), set(C.pd, add(get(C.pd), get(C.dstep))));
  const blockStart: Code[] = [
    set(
      C.pout,
      at4(
        get(C.out),
        add(mul(index(get(C.kh), [get(C.fw), get(C.kw)], [get(C.cin), get(C.ci)]), get(C.cout)), get(C.co)),
      ),
    ),
  ];
  const store: Code[] = [];
  for (let i = 0; i < inBlock; i++) {
    const row = i === 0 ? get(C.pout) : add(get(C.pout), mul(get(C.cout), i32(4 * i)));
    for (let j = 0; j < outVectors; j++) {
      blockStart.push(set(acc(i, j), op.v128Load(row, 16 * j)));
      store.push(op.v128Store(row, get(acc(i, j)), 16 * j));
    }
  }
  // One image at a time (its dy rows and input stay in cache while every block passes over
  // them), the filter gradient accumulating on the heap.
  return {
    name: `convFilterGrad${inBlock}x${outVectors * 4}`,
    params: frame.params,
    locals: frame.locals,
    body: [
      op.fill(get(C.out), i32(0), mul(mul(mul(mul(get(C.fh), get(C.fw)), get(C.cin)), get(C.cout)), i32(4))),
      set(C.xstep, mul(mul(get(C.sw), get(C.cin)), i32(4))),
      set(C.dstep, mul(get(C.cout), i32(4))),
      op.if(
        op.eq(get(C.dw), i32(1)),
        [set(C.taps, i32(1)), set(C.run, mul(get(C.fw), get(C.cin)))],
        [set(C.taps, get(C.fw)), set(C.run, get(C.cin))],
      ),
      op.for(
        C.n,
        i32(0),
        get(C.batch),
        op.for(
          C.kh,
          i32(0),
          get(C.fh),
          op.for(
            C.kw,
            i32(0),
            get(C.taps),
            op.for(
              C.ci,
              i32(0),
              get(C.run),
              op.for(
                C.co,
                i32(0),
                get(C.cout),
                [
                  ...blockStart,
                  op.for(C.oh, i32(0), get(C.outH), [
                    set(
                      C.px,
                      at4(
                        get(C.a),
                        add(
                          mul(
                            index(
                              get(C.n),
                              [get(C.inH), add(mul(get(C.oh), get(C.sh)), mul(get(C.kh), get(C.dh)))],
                              [get(C.inW), mul(get(C.kw), get(C.dw))],
                            ),
                            get(C.cin),
                          ),
                          get(C.ci),
                        ),
                      ),
                    ),
                    set(
                      C.pd,
                      at4(
                        get(C.b),
                        add(
                          mul(index(get(C.n), [get(C.outH), get(C.oh)], [get(C.outW), i32(0)]), get(C.cout)),
                          get(C.co),
                        ),
                      ),
                    ),
                    op.for(C.ow, i32(0), get(C.outW), perPosition),
                  ]),
                  ...store,
                ],
                outVectors * 4,
              ),
              inBlock,
            ),
          ),
        ),
      ),
    ],
  };
}

/**
 * convInputGrad: dx[n, ih, iw, ci] = sum over kh, kw, co of dy[n, oh, ow, co] * w[kh, kw, ci, co]
 * where ih = oh*sh + kh - top and iw = ow*sw + kw - left (a = dy, b = the filter with its last two
 * axes swapped, [kh, kw, co, ci], so that input channels are contiguous), for each input position
 * gathered in registers (`vectors` x 4 input channels) and stored once. Dilations are not read.
 */
function convInputGrad(vectors: number): FunctionSpec {
  const frame = convFrame(
    [],
    ['n', 'ih', 'iw', 'cb', 'kh', 'kw', 'oh', 'ow', 't', 'co', 'pd', 'pw', 'wstep', 'pout'],
    1 + vectors,
  );
  const C = frame.at;
  const s = frame.vector;
  const accs = Array.from({ length: vectors }, (_, j) => frame.vector + 1 + j);
  const perChannel: Code[] = [set(s, op.f32x4Splat(op.f32Load(get(C.pd))))];
  for (const [j, a] of accs.entries()) {
    perChannel.push(set(a, op.f32x4Add(get(a), op.f32x4Mul(get(s), op.v128Load(get(C.pw), 16 * j)))));
  }
  perChannel.push(set(C.pd, add(get(C.pd), i32(4))), set(C.pw, add(get(C.pw), get(C.wstep))));
  // The output row oh (or column ow) that reads input row ih through tap k, if there is one.
  const through = (
    position: number,
    pad: number,
    k: number,
    stride: number,
    size: number,
    target: number,
    body: Code,
  ): Code => [
    set(C.t, sub(add(get(position), get(pad)), get(k))),
    op.if(op.and(op.geS(get(C.t), i32(0)), op.eqz(op.remS(get(C.t), get(stride)))), [
      set(target, op.divS(get(C.t), get(stride))),
      op.if(op.ltS(get(target), get(size)), body),
    ]),
  ];
  const perTap: Code = [
    set(
      C.pd,
      at4(get(C.a), mul(index(get(C.n), [get(C.outH), get(C.oh)], [get(C.outW), get(C.ow)]), get(C.cout))),
    ),
    set(
      C.pw,
      at4(
        get(C.b),
        add(mul(mul(index(get(C.kh), [get(C.fw), get(C.kw)]), get(C.cout)), get(C.cin)), get(C.cb)),
      ),
    ),
    op.for(C.co, i32(0), get(C.cout), perChannel),
  ];
  return {
    name: `convInputGrad${vectors * 4}`,
    params: frame.params,
    locals: frame.locals,
    body: [
      set(C.wstep, mul(get(C.cin), i32(4))),
      op.for(
        C.n,
        i32(0),
        get(C.batch),
        op.for(
          C.ih,
          i32(0),
          get(C.inH),
          op.for(
            C.iw,
            i32(0),
            get(C.inW),
            op.for(
              C.cb,
              i32(0),
              get(C.cin),
              [
                ...accs.map((a) => set(a, op.v128Zero())),
                op.for(
                  C.kh,
                  i32(0),
                  get(C.fh),
                  through(
                    C.ih,
                    C.top,
                    C.kh,
                    C.sh,
                    C.outH,
                    C.oh,
                    op.for(C.kw, i32(0), get(C.fw), through(C.iw, C.left, C.kw, C.sw, C.outW, C.ow, perTap)),
                  ),
                ),
                set(
                  C.pout,
                  at4(
                    get(C.out),
                    add(
                      mul(index(get(C.n), [get(C.inH), get(C.ih)], [get(C.inW), get(C.iw)]), get(C.cin)),
                      get(C.cb),
                    ),
                  ),
                ),
                ...accs.map((a, j) => op.v128Store(get(C.pout), get(a), 16 * j)),
              ],
              vectors * 4,
            ),
          ),
        ),
      ),
    ],
  };
}

/**
 * Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: each 2x2 block of outputs (a tile) is
 * computed from the 4x4 input patch d around it as A^T [(G g G^T) . (B^T d B)] A, 16 products
 * per channel pair where the direct kernel takes 36. The transformed filter U = G g G^T is
 * [16, cin, cout]; the transformed input V = B^T d B of every tile is laid out as 16 planes
 * [16, tiles, cin], so that each plane's products M[p] = V[p] U[p] are one plain matrix product
 * (the forward kernel as a 1x1 convolution); the output transform folds M back into 2x2 outputs.
 * Channels run four at a time (cin and cout divide by 4).
 *
 * winogradInput(a, v, batch, inH, inW, cin, tilesH, tilesW): a is the input already padded to
 * at least 2 * tiles + 2 rows and columns; tile t = (n * tilesH + th) * tilesW + tw reads the
 * patch whose top left corner is (2 th, 2 tw), and plane p of v starts p * tiles * cin floats in.
 */
function winogradInput(): FunctionSpec {
  const names = ['a', 'v', 'batch', 'inH', 'inW', 'cin', 'tilesH', 'tilesW'] as const;
  const ints = ['n', 'th', 'tw', 'c', 't', 'pa', 'q', 'row', 'col', 'plane'] as const;
  const W: Record<(typeof names)[number] | (typeof ints)[number], number> = Object.fromEntries(
    [...names, ...ints].map((name, i) => [name, i]),
  ) as never;
  const first = names.length + ints.length;
  const d = (i: number, j: number): number => first + i * 4 + j;
  const tmp = first + 16;
  const sub4 = op.f32x4Sub;
  const add4 = op.f32x4Add;
  /** B^T applied to four values x0..x3 (in locals), in place. */
  const bt = (x: number[]): Code[] => [
    set(x[0], sub4(get(x[0]), get(x[2]))),
    set(x[3], sub4(get(x[1]), get(x[3]))),
    set(tmp, get(x[1])),
    set(x[1], add4(get(tmp), get(x[2]))),
    set(x[2], sub4(get(x[2]), get(tmp))),
  ];
  const body: Code[] = [];
  for (let i = 0; i < 4; i++) {
    body.push(set(W.q, i === 0 ? get(W.pa) : add(get(W.pa), mul(get(W.row), i32(i)))));
    for (let j = 0; j < 4; j++) {
      body.push(set(d(i, j), op.v128Load(j === 0 ? get(W.q) : add(get(W.q), mul(get(W.col), i32(j))))));
    }
  }
  for (let j = 0; j < 4; j++) body.push(...bt([0, 1, 2, 3].map((i) => d(i, j))));
  for (let i = 0; i < 4; i++) body.push(...bt([0, 1, 2, 3].map((j) => d(i, j))));
  body.push(set(W.q, at4(get(W.v), add(mul(get(W.t), get(W.cin)), get(W.c)))));
  for (let p = 0; p < 16; p++) {
    body.push(op.v128Store(get(W.q), get(d(p >> 2, p & 3))));
    if (p < 15) body.push(set(W.q, add(get(W.q), get(W.plane))));
  }
  return {
    name: 'winogradInput',
    params: new Array<ValueType>(names.length).fill(I32),
    locals: [...new Array<ValueType>(ints.length).fill(I32), ...new Array<ValueType>(17).fill(V128)],
    body: [
      set(W.col, mul(get(W.cin), i32(4))),
      set(W.row, mul(get(W.inW), get(W.col))),
      set(W.plane, mul(mul(mul(mul(get(W.batch), get(W.tilesH)), get(W.tilesW)), get(W.cin)), i32(4))),
      set(W.t, i32(0)),
      op.for(
        W.n,
        i32(0),
        get(W.batch),
        op.for(
          W.th,
          i32(0),
          get(W.tilesH),
          op.for(W.tw, i32(0), get(W.tilesW), [
            op.for(
              W.c,
              i32(0),
              get(W.cin),
              [
                set(
                  W.pa,
                  at4(
                    get(W.a),
                    add(
                      mul(
                        index(
                          get(W.n),
                          [get(W.inH), mul(get(W.th), i32(2))],
                          [get(W.inW), mul(get(W.tw), i32(2))],
                        ),
                        get(W.cin),
                      ),
                      get(W.c),
                    ),
                  ),
                ),
                ...body,
              ],
              4,
            ),
            set(W.t, add(get(W.t), i32(1))),
          ]),
        ),
      ),
    ],
  };
}

/** Locals of the loop over the 2x2 output tiles shared by winogradOutput and winogradOutputGrad. */
type OutputTileLocals = Record<
  | 'batch'
  | 'outW'
  | 'cout'
  | 'tilesH'
  | 'tilesW'
  | 'n'
  | 'th'
  | 'tw'
  | 'k'
  | 't'
  | 'plane'
  | 'oh'
  | 'ow'
  | 'ostep'
  | 'rstep',
  number
>;

/**
 * Runs `body` for every 2x2 output tile and four output channels (k), with the tile's output
 * row and column (oh, ow), its index t, the output row/column steps and the transform plane size set.
 */
function outputTiles(W: OutputTileLocals, body: Code): Code[] {
  return [
    set(W.ostep, mul(get(W.cout), i32(4))),
    set(W.rstep, mul(get(W.outW), get(W.ostep))),
    set(W.plane, mul(mul(mul(mul(get(W.batch), get(W.tilesH)), get(W.tilesW)), get(W.cout)), i32(4))),
    set(W.t, i32(0)),
    op.for(
      W.n,
      i32(0),
      get(W.batch),
      op.for(W.th, i32(0), get(W.tilesH), [
        set(W.oh, mul(get(W.th), i32(2))),
        op.for(W.tw, i32(0), get(W.tilesW), [
          set(W.ow, mul(get(W.tw), i32(2))),
          op.for(W.k, i32(0), get(W.cout), body, 4),
          set(W.t, add(get(W.t), i32(1))),
        ]),
      ]),
    ),
  ];
}

/**
 * winogradOutput(m, out, bias, relu, batch, outH, outW, cout, tilesH, tilesW): the products m
 * ([16, tiles, cout]) folded into each tile's 2x2 outputs (those inside outH x outW), with the
 * bias (address, 0 for none) and ReLU (1) applied as they are stored.
 */
function winogradOutput(): FunctionSpec {
  const names = ['m', 'out', 'bias', 'relu', 'batch', 'outH', 'outW', 'cout', 'tilesH', 'tilesW'] as const;
  const ints = ['n', 'th', 'tw', 'k', 't', 'q', 'plane', 'po', 'oh', 'ow', 'ostep', 'rstep'] as const;
  const W: Record<(typeof names)[number] | (typeof ints)[number], number> = Object.fromEntries(
    [...names, ...ints].map((name, i) => [name, i]),
  ) as never;
  const first = names.length + ints.length;
  const m = (i: number, j: number): number => first + i * 4 + j;
  const bv = first + 16;
  const add4 = op.f32x4Add;
  const sub4 = op.f32x4Sub;
  const body: Code[] = [set(W.q, at4(get(W.m), add(mul(get(W.t), get(W.cout)), get(W.k))))];
  for (let p = 0; p < 16; p++) {
    body.push(set(m(p >> 2, p & 3), op.v128Load(get(W.q))));
    if (p < 15) body.push(set(W.q, add(get(W.q), get(W.plane))));
  }
  // A^T over rows (s0j into m(0, j), s1j into m(1, j)), then over columns.
  for (let j = 0; j < 4; j++) {
    body.push(
      set(m(0, j), add4(add4(get(m(0, j)), get(m(1, j))), get(m(2, j)))),
      set(m(1, j), sub4(sub4(get(m(1, j)), get(m(2, j))), get(m(3, j)))),
    );
  }
  const y: number[] = [];
  for (let i = 0; i < 2; i++) {
    body.push(
      set(m(i, 3), sub4(sub4(get(m(i, 1)), get(m(i, 2))), get(m(i, 3)))),
      set(m(i, 0), add4(add4(get(m(i, 0)), get(m(i, 1))), get(m(i, 2)))),
    );
    y.push(m(i, 0), m(i, 3));
  }
  body.push(
    op.if(get(W.bias), set(bv, op.v128Load(at4(get(W.bias), get(W.k)))), set(bv, op.v128Zero())),
    ...y.map((v) => set(v, add4(get(v), get(bv)))),
    op.if(
      get(W.relu),
      y.map((v) => set(v, op.f32x4Max(get(v), op.v128Zero()))),
    ),
    set(
      W.po,
      at4(
        get(W.out),
        add(mul(index(get(W.n), [get(W.outH), get(W.oh)], [get(W.outW), get(W.ow)]), get(W.cout)), get(W.k)),
      ),
    ),
    op.v128Store(get(W.po), get(y[0])),
    op.if(op.ltS(add(get(W.ow), i32(1)), get(W.outW)), op.v128Store(add(get(W.po), get(W.ostep)), get(y[1]))),
    op.if(op.ltS(add(get(W.oh), i32(1)), get(W.outH)), [
      set(W.po, add(get(W.po), get(W.rstep))),
      op.v128Store(get(W.po), get(y[2])),
      op.if(
        op.ltS(add(get(W.ow), i32(1)), get(W.outW)),
        op.v128Store(add(get(W.po), get(W.ostep)), get(y[3])),
      ),
    ]),
  );
  return {
    name: 'winogradOutput',
    params: new Array<ValueType>(names.length).fill(I32),
    locals: [...new Array<ValueType>(ints.length).fill(I32), ...new Array<ValueType>(17).fill(V128)],
    body: [...outputTiles(W, body)],
  };
}

/** G of Winograd F(2x2, 3x3): the filter transform is G g G^T. */
const WINOGRAD_G = [
  [1, 0, 0],
  [0.5, 0.5, 0.5],
  [0.5, -0.5, 0.5],
  [0, 0, 1],
];

/**
 * winogradOutputGrad(dy, m, batch, outH, outW, cout, tilesH, tilesW): the output transform's
 * gradient, A dY A^T, of each tile's 2x2 block of dy (zero outside outH x outW) into 16 planes
 * [16, tiles, cout] laid out as winogradOutput reads them (for the filter gradient: the sum over
 * tiles of V[p]^T times plane p is the gradient of the transformed filter).
 */
function winogradOutputGrad(): FunctionSpec {
  const names = ['dy', 'm', 'batch', 'outH', 'outW', 'cout', 'tilesH', 'tilesW'] as const;
  const ints = ['n', 'th', 'tw', 'k', 't', 'q', 'plane', 'pd', 'oh', 'ow', 'ostep', 'rstep'] as const;
  const W: Record<(typeof names)[number] | (typeof ints)[number], number> = Object.fromEntries(
    [...names, ...ints].map((name, i) => [name, i]),
  ) as never;
  const first = names.length + ints.length;
  const y = [first, first + 1, first + 2, first + 3];
  const r = (i: number, j: number): number => first + 4 + i * 2 + j;
  const add4 = op.f32x4Add;
  const sub4 = op.f32x4Sub;
  const load = (v: number, cond: Code | undefined, address: Code): Code =>
    cond === undefined
      ? set(v, op.v128Load(address))
      : op.if(cond, set(v, op.v128Load(address)), set(v, op.v128Zero()));
  const right = op.ltS(add(get(W.ow), i32(1)), get(W.outW));
  const below = op.ltS(add(get(W.oh), i32(1)), get(W.outH));
  const body: Code[] = [
    set(
      W.pd,
      at4(
        get(W.dy),
        add(mul(index(get(W.n), [get(W.outH), get(W.oh)], [get(W.outW), get(W.ow)]), get(W.cout)), get(W.k)),
      ),
    ),
    load(y[0], undefined, get(W.pd)),
    load(y[1], right, add(get(W.pd), get(W.ostep))),
    load(y[2], below, add(get(W.pd), get(W.rstep))),
    load(y[3], op.and(right, below), add(add(get(W.pd), get(W.rstep)), get(W.ostep))),
    // R = A Y (4 x 2): rows Y0, Y0 + Y1, Y0 - Y1, -Y1.
    ...[0, 1].flatMap((j) => [
      set(r(0, j), get(y[j])),
      set(r(1, j), add4(get(y[j]), get(y[2 + j]))),
      set(r(2, j), sub4(get(y[j]), get(y[2 + j]))),
      set(r(3, j), sub4(op.v128Zero(), get(y[2 + j]))),
    ]),
    set(W.q, at4(get(W.m), add(mul(get(W.t), get(W.cout)), get(W.k)))),
  ];
  // dM = R A^T: row i is r0, r0 + r1, r0 - r1, -r1.
  for (let i = 0; i < 4; i++) {
    const row = [
      get(r(i, 0)),
      add4(get(r(i, 0)), get(r(i, 1))),
      sub4(get(r(i, 0)), get(r(i, 1))),
      sub4(op.v128Zero(), get(r(i, 1))),
    ];
    for (let j = 0; j < 4; j++) {
      body.push(op.v128Store(get(W.q), row[j]));
      if (i * 4 + j < 15) body.push(set(W.q, add(get(W.q), get(W.plane))));
    }
  }
  return {
    name: 'winogradOutputGrad',
    params: new Array<ValueType>(names.length).fill(I32),
    locals: [...new Array<ValueType>(ints.length).fill(I32), ...new Array<ValueType>(12).fill(V128)],
    body: [...outputTiles(W, body)],
  };
}

/**
 * The filter gradient from the transformed filter's (du, [16, cin, cout]) into dg
 * ([3, 3, cin, cout]): dg = G^T du G for each channel pair.
 */
export function winogradFilterGrad(du: Float32Array, dg: Float32Array, cin: number, cout: number): void {
  const pairs = cin * cout;
  const t = new Float64Array(12);
  for (let at = 0; at < pairs; at++) {
    // t = G^T du (3 x 4)
    for (let a = 0; a < 3; a++) {
      for (let j = 0; j < 4; j++) {
        let sum = 0;
        for (let i = 0; i < 4; i++) sum += WINOGRAD_G[i][a] * du[(i * 4 + j) * pairs + at];
        t[a * 4 + j] = sum;
      }
    }
    for (let a = 0; a < 3; a++) {
      for (let b = 0; b < 3; b++) {
        let sum = 0;
        for (let j = 0; j < 4; j++) sum += t[a * 4 + j] * WINOGRAD_G[j][b];
        dg[(a * 3 + b) * pairs + at] = sum;
      }
    }
  }
}

/**
 * The Winograd F(2x2, 3x3) transform of a [3, 3, cin, cout] filter g into u, [16, cin, cout]:
 * u[i * 4 + j] = (G g G^T)[i, j] for each channel pair (plain arithmetic, once per call).
 */
export function winogradFilter(g: Float32Array, u: Float32Array, cin: number, cout: number): void {
  const pairs = cin * cout;
  const G = WINOGRAD_G;
  const t = new Float64Array(12);
  for (let at = 0; at < pairs; at++) {
    // t = G g (4 x 3), g[a][b] at ((a * 3 + b) * pairs + at)
    for (let i = 0; i < 4; i++) {
      for (let b = 0; b < 3; b++) {
        let sum = 0;
        for (let a = 0; a < 3; a++) sum += G[i][a] * g[(a * 3 + b) * pairs + at];
        t[i * 3 + b] = sum;
      }
    }
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 4; j++) {
        u[(i * 4 + j) * pairs + at] = t[i * 3] * G[j][0] + t[i * 3 + 1] * G[j][1] + t[i * 3 + 2] * G[j][2];
      }
    }
  }
}

/** Output positions x output channels of the forward kernel, the first that fits wins. */
export const CONV_FORWARD_BLOCKS: ReadonlyArray<readonly [number, number]> = [
  [4, 8],
  [1, 8],
];

/** Input-channel blocks of the input-gradient kernel, the first that divides wins. */
export const CONV_INPUT_BLOCKS: readonly number[] = [32, 16, 8];

/**
 * Input x output channel blocks of the filter-gradient kernel, the first that divides wins (input
 * channels: the run of fw x cin values a filter row reads when it is not dilated, else cin).
 */
export const CONV_FILTER_BLOCKS: ReadonlyArray<readonly [number, number]> = [
  [2, 16],
  [4, 8],
  [3, 8],
  [1, 16],
  [1, 8],
];

export interface HeapKernels {
  maxPoolGrad(...args: number[]): void;
  maxPoolGrad4(...args: number[]): void;
  maxPoolGradTiled(...args: number[]): void;
  maxPoolGrad2x2(...args: number[]): void;
  maxPool2x2(...args: number[]): void;
  leadingSum(x: number, out: number, rows: number, cols: number, scratch: number): void;
  leadingSum4(x: number, out: number, rows: number, cols: number, scratch: number): void;
  reluGrad(dy: number, y: number, out: number, count: number): void;
  addRows(x: number, b: number, out: number, rows: number, cols: number): void;
  adam(g: number, x: number, m: number, v: number, outX: number, count: number, ...scalars: number[]): void;
  winogradInput(...args: number[]): void;
  winogradOutput(...args: number[]): void;
  winogradOutputGrad(...args: number[]): void;
  [conv: `convForward${number}x${number}` | `convFilterGrad${number}x${number}` | `convInputGrad${number}`]: (
    ...args: number[]
  ) => void;
}

const FUNCTIONS = [
  maxPoolGradScalar,
  maxPoolGradTiled,
  maxPoolGrad2x2,
  maxPool2x2,
  maxPoolGradVector,
  leadingSum,
  leadingSum4,
  reluGrad,
  addRows,
  ...CONV_FILTER_BLOCKS.map(([i, o]) => convFilterGrad(i, o / 4)),
  ...CONV_INPUT_BLOCKS.map((c) => convInputGrad(c / 4)),
  ...CONV_FORWARD_BLOCKS.map(([p, c]) => convForward(p, c / 4)),
  winogradInput(),
  winogradOutput(),
  winogradOutputGrad(),
  adam,
];
const instances = new WeakMap<WebAssembly.Memory, HeapKernels | null>();

/** The module's bytes (for a memory that is not shared). */
export function heapKernelBytes(): Uint8Array<ArrayBuffer> {
  return writeModule(FUNCTIONS, { shared: false });
}

/**
 * The kernels bound to `memory`, or undefined where they cannot run (a shared memory, or an
 * engine without WebAssembly SIMD): callers then take their JavaScript path.
 */
export function heapKernelsFor(memory: WebAssembly.Memory | undefined): HeapKernels | undefined {
  if (!memory || !(memory instanceof WebAssembly.Memory)) return undefined;
  const known = instances.get(memory);
  if (known !== undefined) return known ?? undefined;
  let kernels: HeapKernels | null = null;
  // A shared memory would need the module to declare its maximum; those backends keep the JS path.
  if (memory.buffer instanceof ArrayBuffer) {
    try {
      const module = new WebAssembly.Module(heapKernelBytes());
      kernels = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as HeapKernels;
    } catch {
      kernels = null;
    }
  }
  instances.set(memory, kernels);
  return kernels ?? undefined;
}
