/**
 * Turns a stream of calibrated scores into anomaly episodes: an episode starts after
 * `minDuration` consecutive scores at or above the threshold and ends after `minDuration`
 * consecutive scores below threshold - hysteresis, so a noisy score near the threshold does
 * not flap.
 */

export interface DecisionOptions {
  threshold: number;
  hysteresis: number;
  minDuration: number;
}

export interface Episode {
  /** Timestamp (ms) and sample index of the first sample of the run that raised the episode. */
  start: number;
  startIndex: number;
  /** Set when the episode has ended: the first sample judged normal again. */
  end?: number;
  endIndex?: number;
  samples: number;
  peakScore: number;
}

export interface DecisionState {
  active: boolean;
  run: number;
  runStart: number;
  runStartIndex: number;
  episode: Episode | null;
}

export interface DecisionStep {
  isAnomaly: boolean;
  /** 'start' on the first anomalous sample of an episode, 'end' on the sample that closes it. */
  event?: 'start' | 'end';
  episode?: Episode;
}

export class Decision {
  private s: DecisionState = { active: false, run: 0, runStart: 0, runStartIndex: 0, episode: null };

  constructor(readonly options: DecisionOptions) {
    const { threshold, hysteresis, minDuration } = options;
    if (!(threshold > 0 && threshold < 1)) throw new Error('threshold must be between 0 and 1');
    if (!(hysteresis >= 0 && hysteresis < threshold)) throw new Error('hysteresis must be in [0, threshold)');
    if (!(minDuration >= 1) || !Number.isInteger(minDuration))
      throw new Error('minimum duration must be an integer >= 1');
  }

  get active(): boolean {
    return this.s.active;
  }

  /** Score level below which a sample counts towards ending an episode. */
  get releaseLevel(): number {
    return this.options.threshold - this.options.hysteresis;
  }

  step(score: number, timestamp: number, index: number): DecisionStep {
    const { threshold, minDuration } = this.options;
    const s = this.s;
    if (!s.active) {
      if (score >= threshold) {
        if (s.run === 0) {
          s.runStart = timestamp;
          s.runStartIndex = index;
        }
        s.run++;
      } else {
        s.run = 0;
      }
      if (s.run >= minDuration) {
        s.active = true;
        s.run = 0;
        s.episode = {
          start: s.runStart,
          startIndex: s.runStartIndex,
          samples: minDuration,
          peakScore: score,
        };
        return { isAnomaly: true, event: 'start', episode: { ...s.episode } };
      }
      return { isAnomaly: false };
    }
    const episode = s.episode as Episode;
    episode.peakScore = Math.max(episode.peakScore, score);
    if (score < this.releaseLevel) s.run++;
    else s.run = 0;
    if (s.run >= minDuration) {
      s.active = false;
      s.run = 0;
      const ended: Episode = { ...episode, end: timestamp, endIndex: index };
      s.episode = null;
      return { isAnomaly: false, event: 'end', episode: ended };
    }
    episode.samples++;
    return { isAnomaly: true, episode: { ...episode } };
  }

  state(): DecisionState {
    return { ...this.s, episode: this.s.episode ? { ...this.s.episode } : null };
  }

  restore(state: DecisionState): void {
    this.s = { ...state, episode: state.episode ? { ...state.episode } : null };
  }
}
