// The quick form of bench:fleet: a signed roll-out reaches light devices and a real Node-RED
// runtime (a child process running node-red with this package) whose edge-model follows fleet:bench.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';

const BENCH = path.resolve(__dirname, '..', '..', 'bench', 'fleet.js');

describe('bench:fleet, quick form: 4 light devices and a Node-RED runtime', function () {
  this.timeout(120000);

  it('every device has each version, the runtime reports it runs it', async () => {
    const output = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [BENCH, '--part', 'rollout', '--devices', '5', '--red', '1', '--kb', '20'],
        { timeout: 110000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
      );
    });
    assert.match(output, /\| all online +\| 4\/4 /, output);
    assert.match(output, /\| 10 % offline, back after 1 s +\| 4\/4 /, output);
    const summary = /had version 1 within (\d+) ms, version 2 within (\d+) ms/.exec(output);
    assert.ok(summary, `the runtime never ran a version:\n${output}`);
    assert.doesNotMatch(output, /Node-RED errors/, output);
  });
});
