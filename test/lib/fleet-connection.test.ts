import assert from 'node:assert/strict';
import { isEdgeAiError, type EdgeAiError } from '../../lib/errors';
import { FleetConnection } from '../../lib/fleet/connection';
import { fleetBed } from '../helpers/fleet-bed';
import { until } from '../helpers/wait';

for (const kind of ['embedded', 'mosquitto'] as const) {
  describe(`fleet connection: a device id used twice (${kind} broker)`, function () {
    this.timeout(30000);
    const bed = fleetBed(kind, 'dup');

    function connection(deviceId: string): FleetConnection {
      const c = new FleetConnection({ url: bed.broker.url, fleet: bed.fleet, deviceId, reconnectMs: 200 });
      bed.open.push(c);
      return c;
    }

    it('two connections with one client id: one stops with an error naming the id, the other keeps its session', async () => {
      const first = connection('pi7');
      await first.waitConnected();
      const second = connection('pi7');
      const errors: EdgeAiError[] = [];
      for (const c of [first, second]) c.on('duplicate', (err: EdgeAiError) => errors.push(err));
      const err = await until('a duplicate id reported', () => errors[0], 20000);
      assert.ok(isEdgeAiError(err));
      assert.equal(err.code, 'fleet-duplicate-id');
      assert.match(err.message, /client id "dup[^"]*-pi7" \(device "pi7"\) is used by another connection/);
      const [stopped, kept] = first.duplicate ? [first, second] : [second, first];
      assert.equal(stopped.duplicate, err);
      await assert.rejects(stopped.waitConnected(100), /is used by another connection/);
      // The loop is over: the other connection stays connected, without a second report.
      await kept.waitConnected(5000);
      let drops = 0;
      kept.on('offline', () => drops++);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(kept.connected, true);
      assert.equal(drops, 0, 'no more sessions taken over');
      assert.equal(errors.length, 1);
      assert.equal(kept.duplicate, undefined);
    });
  });
}
