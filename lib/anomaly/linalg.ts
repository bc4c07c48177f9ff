/** Small dense linear algebra for the multivariate detectors (a few dozen channels at most). */

export type Vector = number[];
export type SquareMatrix = number[][];

export function mean(rows: readonly Vector[]): Vector {
  const d = rows[0].length;
  const m = new Array<number>(d).fill(0);
  for (const row of rows) for (let j = 0; j < d; j++) m[j] += row[j];
  return m.map((v) => v / rows.length);
}

/** Sample covariance (n - 1 denominator) around `mu`. */
export function covariance(rows: readonly Vector[], mu: Vector): SquareMatrix {
  const d = mu.length;
  const c: SquareMatrix = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (const row of rows) {
    for (let i = 0; i < d; i++) {
      const di = row[i] - mu[i];
      for (let j = i; j < d; j++) c[i][j] += di * (row[j] - mu[j]);
    }
  }
  const denom = Math.max(1, rows.length - 1);
  for (let i = 0; i < d; i++) {
    for (let j = i; j < d; j++) {
      c[i][j] /= denom;
      c[j][i] = c[i][j];
    }
  }
  return c;
}

/**
 * Eigen decomposition of a symmetric matrix by cyclic Jacobi rotations.
 * Returns eigenvalues in descending order and the matching unit eigenvectors as columns
 * (vectors[k] is the k-th eigenvector).
 */
export function symmetricEigen(a: SquareMatrix): { values: number[]; vectors: Vector[] } {
  const n = a.length;
  const m = a.map((row) => row.slice());
  const v: SquareMatrix = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)),
  );
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p][q] * m[p][q];
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(m[p][q]) < 1e-300) continue;
        const theta = (m[q][q] - m[p][p]) / (2 * m[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k][p];
          const mkq = m[k][q];
          m[k][p] = c * mkp - s * mkq;
          m[k][q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p][k];
          const mqk = m[q][k];
          m[p][k] = c * mpk - s * mqk;
          m[q][k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => m[j][j] - m[i][i]);
  return {
    values: order.map((i) => m[i][i]),
    vectors: order.map((i) => v.map((row) => row[i])),
  };
}

export function dot(a: Vector, b: Vector): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Inverse of a symmetric positive definite matrix via its eigen decomposition. */
export function inverseSymmetric(a: SquareMatrix): SquareMatrix {
  const { values, vectors } = symmetricEigen(a);
  const n = a.length;
  const inv: SquareMatrix = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let k = 0; k < n; k++) {
    const w = 1 / values[k];
    const u = vectors[k];
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) inv[i][j] += w * u[i] * u[j];
  }
  return inv;
}

/** x' A x */
export function quadraticForm(a: SquareMatrix, x: Vector): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    let row = 0;
    for (let j = 0; j < x.length; j++) row += a[i][j] * x[j];
    s += x[i] * row;
  }
  return s;
}

export function median(values: readonly number[]): number {
  const s = values.slice().sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** Median absolute deviation, scaled by 1.4826 so it estimates the standard deviation of normal data. */
export function mad(values: readonly number[], centre = median(values)): number {
  return 1.4826 * median(values.map((v) => Math.abs(v - centre)));
}

export function variance(values: readonly number[], mu: number): number {
  let s = 0;
  for (const v of values) s += (v - mu) * (v - mu);
  return s / Math.max(1, values.length - 1);
}

/** The q-quantile (0..1) of `values` with linear interpolation. */
export function quantile(values: readonly number[], q: number): number {
  const s = values.slice().sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = Math.min(1, Math.max(0, q)) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
