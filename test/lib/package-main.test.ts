import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The package root: dist/test/lib -> the checkout, where package.json names "main". */
const packageRoot = path.resolve(__dirname, '..', '..', '..');

describe('package main (the library API)', () => {
  it('resolves "main" to the built index and exposes the key entry points by area', () => {
    const manifest = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8'));
    const resolved = require.resolve(packageRoot);
    assert.equal(resolved, path.join(packageRoot, manifest.main));
    const lib = require(packageRoot);
    const entryPoints: Array<[string, string]> = [
      ['anomaly', 'AnomalyDetector'],
      ['preprocess', 'Normaliser'],
      ['models', 'ModelStore'],
      ['models', 'ModelHandle'],
      ['models', 'createRunner'],
      ['models', 'exportLayersModelToOnnx'],
      ['models', 'compressStoredModel'],
      ['sensors', 'createSensorSource'],
      ['train', 'DeviceTrainer'],
    ];
    for (const [area, name] of entryPoints) {
      assert.equal(typeof lib[area]?.[name], 'function', `${area}.${name}`);
    }
  });

  it('works from a plain script: a detector from the package main scores samples', async () => {
    const { anomaly, preprocess, seededRandom } = require(packageRoot);
    const detector = new anomaly.AnomalyDetector({ method: 'zscore', window: 1, learningSamples: 40 });
    const random = seededRandom(5) as () => number;
    let last: { learning: boolean; score: number } | undefined;
    for (let t = 0; t < 50; t++) last = await detector.process([random()], ['x'], t);
    assert.equal(last?.learning, false);
    assert.ok(last !== undefined && last.score >= 0 && last.score <= 1);
    await detector.close();
    assert.deepEqual(preprocess.toSample({ a: 1, b: 2 }), { values: [1, 2], channels: ['a', 'b'] });
  });
});
