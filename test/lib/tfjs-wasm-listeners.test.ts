import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import path from 'node:path';

interface Report {
  backend: string;
  before: Record<string, number>;
  after: Record<string, number>;
  sum: number[];
  handled: string[];
  alive: boolean;
}

describe('TF.js wasm backend and the process listeners of an embedding application', function () {
  this.timeout(60000);

  it('starting wasm leaves no re-throwing listener: the application handles its own exceptions', async () => {
    const child = fork(path.join(__dirname, '..', 'fixtures', 'wasm-listeners.js'), [], { stdio: 'pipe' });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const report = await new Promise<Report>((resolve, reject) => {
      child.on('message', (m) => resolve(m as Report));
      child.on('exit', (code) => reject(new Error(`child exited (${code}) before reporting: ${stderr}`)));
    });
    child.kill();
    assert.equal(report.backend, 'wasm');
    assert.deepEqual(report.sum, [4, 6], 'the backend works after the listeners were removed');
    assert.deepEqual(report.after, report.before, 'listener counts before and after the start');
    assert.deepEqual(report.handled.sort(), ['exception: boom', 'rejection: nope']);
  });
});
