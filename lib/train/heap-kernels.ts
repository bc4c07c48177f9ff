/**
 * Training kernels compiled to WebAssembly at start-up and run in place on the TF.js
 * wasm backend's heap (they import its memory and keep everything else in locals), so a step
 * pays neither JavaScript loops nor copies in and out:
 * - maxPoolGrad: each window's first maximum (as the cpu backend picks it) receives the window's
 *   gradient; four channels at a time when the channel count allows;
 * - leadingSum: sums over the leading rows of a [rows, cols] matrix (bias gradients), in f64;
 * - reluGrad: dy where the activation is positive, else 0 (the fused ReLU gradient), one pass;
 * - convFilterGrad / convInputGrad: the two Conv2D gradients as register-blocked SIMD loops.
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

/**
 * convFilterGrad: dW[kh, kw, ci, co] = sum over n, oh, ow of
 * x[n, oh*sh + kh*dh, ow*sw + kw*dw, ci] * dy[n, oh, ow, co], for an input already padded.
 * Each pass keeps a block of `inBlock` input channels x 8 output channels in registers and runs
 * over every output position: input values broadcast, dy rows loaded four at a time.
 */
function convFilterGrad(inBlock: number, outVectors: number): FunctionSpec {
  const C = {
    x: 0,
    dy: 1,
    dw: 2,
    batch: 3,
    inH: 4,
    inW: 5,
    cin: 6,
    outH: 7,
    outW: 8,
    cout: 9,
    fh: 10,
    fw: 11,
    sh: 12,
    sw: 13,
    dh: 14,
    dwl: 15,
    kh: 16,
    kw: 17,
    ci: 18,
    co: 19,
    n: 20,
    oh: 21,
    ow: 22,
    px: 23,
    pd: 24,
    xstep: 25,
    dstep: 26,
    out: 27,
    s: 28,
    d: 29,
  } as const;
  const dv = (j: number): number => C.d + j;
  const acc = (i: number, j: number): number => C.d + outVectors + i * outVectors + j;
  const accs: number[] = [];
  for (let i = 0; i < inBlock; i++) for (let j = 0; j < outVectors; j++) accs.push(acc(i, j));
  const perPosition: Code[] = [];
  for (let j = 0; j < outVectors; j++) perPosition.push(set(dv(j), op.v128Load(get(C.pd), 16 * j)));
  for (let i = 0; i < inBlock; i++) {
    perPosition.push(set(C.s, op.f32x4Splat(op.f32Load(get(C.px), 4 * i))));
    for (let j = 0; j < outVectors; j++) {
      perPosition.push(set(acc(i, j), op.f32x4Add(get(acc(i, j)), op.f32x4Mul(get(C.s), get(dv(j))))));
    }
  }
  perPosition.push(set(C.px, add(get(C.px), get(C.xstep))), set(C.pd, add(get(C.pd), get(C.dstep))));
  const blockStart: Code[] = [
    set(
      C.out,
      at4(
        get(C.dw),
        add(
          mul(add(mul(add(mul(get(C.kh), get(C.fw)), get(C.kw)), get(C.cin)), get(C.ci)), get(C.cout)),
          get(C.co),
        ),
      ),
    ),
  ];
  const store: Code[] = [];
  for (let i = 0; i < inBlock; i++) {
    const row = i === 0 ? get(C.out) : add(get(C.out), mul(get(C.cout), i32(4 * i)));
    for (let j = 0; j < outVectors; j++) {
      blockStart.push(set(acc(i, j), op.v128Load(row, 16 * j)));
      store.push(op.v128Store(row, get(acc(i, j)), 16 * j));
    }
  }
  // One image at a time (its dy rows and input stay in cache while every block passes over
  // them), the filter gradient accumulating on the heap.
  return {
    name: `convFilterGrad${inBlock}x${outVectors * 4}`,
    params: new Array<typeof I32>(16).fill(I32),
    locals: [
      ...new Array<ValueType>(12).fill(I32),
      V128,
      ...new Array<ValueType>(outVectors).fill(V128),
      ...accs.map((): ValueType => V128),
    ],
    body: [
      op.fill(get(C.dw), i32(0), mul(mul(mul(mul(get(C.fh), get(C.fw)), get(C.cin)), get(C.cout)), i32(4))),
      set(C.xstep, mul(mul(get(C.sw), get(C.cin)), i32(4))),
      set(C.dstep, mul(get(C.cout), i32(4))),
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
            get(C.fw),
            op.for(
              C.ci,
              i32(0),
              get(C.cin),
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
                        get(C.x),
                        add(
                          mul(
                            add(
                              mul(
                                add(
                                  mul(get(C.n), get(C.inH)),
                                  add(mul(get(C.oh), get(C.sh)), mul(get(C.kh), get(C.dh))),
                                ),
                                get(C.inW),
                              ),
                              mul(get(C.kw), get(C.dwl)),
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
                        get(C.dy),
                        add(
                          mul(mul(add(mul(get(C.n), get(C.outH)), get(C.oh)), get(C.outW)), get(C.cout)),
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
 * where ih = oh*sh + kh - top and iw = ow*sw + kw - left, for each input position gathered in
 * registers (`vectors` x 4 input channels) and stored once. `wt` is the filter with its last two
 * axes swapped ([kh, kw, co, ci]) so that input channels are contiguous.
 */
function convInputGrad(vectors: number): FunctionSpec {
  const C = {
    dy: 0,
    wt: 1,
    dx: 2,
    batch: 3,
    inH: 4,
    inW: 5,
    cin: 6,
    outH: 7,
    outW: 8,
    cout: 9,
    fh: 10,
    fw: 11,
    sh: 12,
    sw: 13,
    top: 14,
    left: 15,
    n: 16,
    ih: 17,
    iw: 18,
    cb: 19,
    kh: 20,
    kw: 21,
    oh: 22,
    ow: 23,
    t: 24,
    co: 25,
    pd: 26,
    pw: 27,
    wstep: 28,
    out: 29,
    s: 30,
    acc: 31,
  } as const;
  const accs = Array.from({ length: vectors }, (_, j) => C.acc + j);
  const perChannel: Code[] = [set(C.s, op.f32x4Splat(op.f32Load(get(C.pd))))];
  for (const [j, a] of accs.entries()) {
    perChannel.push(set(a, op.f32x4Add(get(a), op.f32x4Mul(get(C.s), op.v128Load(get(C.pw), 16 * j)))));
  }
  perChannel.push(set(C.pd, add(get(C.pd), i32(4))), set(C.pw, add(get(C.pw), get(C.wstep))));
  // The output row oh (or column ow) that reads input row ih through tap k, if there is one.
  const through = (
    index: number,
    pad: number,
    k: number,
    stride: number,
    size: number,
    target: number,
    body: Code,
  ): Code => [
    set(C.t, sub(add(get(index), get(pad)), get(k))),
    op.if(op.and(op.geS(get(C.t), i32(0)), op.eqz(op.remS(get(C.t), get(stride)))), [
      set(target, op.divS(get(C.t), get(stride))),
      op.if(op.ltS(get(target), get(size)), body),
    ]),
  ];
  const perTap: Code = [
    set(
      C.pd,
      at4(
        get(C.dy),
        mul(add(mul(add(mul(get(C.n), get(C.outH)), get(C.oh)), get(C.outW)), get(C.ow)), get(C.cout)),
      ),
    ),
    set(
      C.pw,
      at4(
        get(C.wt),
        add(mul(mul(add(mul(get(C.kh), get(C.fw)), get(C.kw)), get(C.cout)), get(C.cin)), get(C.cb)),
      ),
    ),
    op.for(C.co, i32(0), get(C.cout), perChannel),
  ];
  return {
    name: `convInputGrad${vectors * 4}`,
    params: new Array<ValueType>(16).fill(I32),
    locals: [...new Array<ValueType>(14).fill(I32), V128, ...accs.map((): ValueType => V128)],
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
                  C.out,
                  at4(
                    get(C.dx),
                    add(
                      mul(
                        add(mul(add(mul(get(C.n), get(C.inH)), get(C.ih)), get(C.inW)), get(C.iw)),
                        get(C.cin),
                      ),
                      get(C.cb),
                    ),
                  ),
                ),
                ...accs.map((a, j) => op.v128Store(get(C.out), get(a), 16 * j)),
              ],
              vectors * 4,
            ),
          ),
        ),
      ),
    ],
  };
}

/** Input-channel blocks of the input-gradient kernel, the first that divides wins. */
export const CONV_INPUT_BLOCKS: readonly number[] = [32, 16, 8];

/** Input x output channel blocks of the filter-gradient kernel, the first that divides wins. */
export const CONV_FILTER_BLOCKS: ReadonlyArray<readonly [number, number]> = [
  [2, 16],
  [4, 8],
  [1, 16],
  [1, 8],
];

export interface HeapKernels {
  maxPoolGrad(...args: number[]): void;
  maxPoolGrad4(...args: number[]): void;
  leadingSum(x: number, out: number, rows: number, cols: number, scratch: number): void;
  leadingSum4(x: number, out: number, rows: number, cols: number, scratch: number): void;
  reluGrad(dy: number, y: number, out: number, count: number): void;
  [convGrad: `convFilterGrad${number}x${number}` | `convInputGrad${number}`]: (...args: number[]) => void;
}

const FUNCTIONS = [
  maxPoolGradScalar,
  maxPoolGradVector,
  leadingSum,
  leadingSum4,
  reluGrad,
  ...CONV_FILTER_BLOCKS.map(([i, o]) => convFilterGrad(i, o / 4)),
  ...CONV_INPUT_BLOCKS.map((c) => convInputGrad(c / 4)),
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
