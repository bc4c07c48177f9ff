/**
 * Sliding window over a stream of rows: the first window is emitted when `size` rows have
 * arrived, then one every `stride` rows. Window k covers rows [k*stride, k*stride + size); with
 * stride > size the rows between windows are left out.
 */
export class SlidingWindow {
  private rows: number[][] = [];
  private untilNext: number;

  constructor(
    readonly size: number,
    readonly stride: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`window size must be >= 1, got ${size}`);
    if (!Number.isInteger(stride) || stride < 1)
      throw new RangeError(`window stride must be >= 1, got ${stride}`);
    this.untilNext = size;
  }

  /** Rows currently held (up to `size`). */
  get filled(): number {
    return this.rows.length;
  }

  /** Adds a row; returns a complete window (timesteps x features, copied) when one is due. */
  push(row: ArrayLike<number>): number[][] | null {
    this.rows.push(Array.from(row));
    if (this.rows.length > this.size) this.rows.shift();
    this.untilNext -= 1;
    if (this.untilNext > 0) return null;
    this.untilNext = this.stride;
    return this.rows.map((r) => r.slice());
  }

  reset(): void {
    this.rows = [];
    this.untilNext = this.size;
  }
}
