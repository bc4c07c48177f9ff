// The spec reporter plus one closing line "tests: N passed, N failed, N skipped" that CI reads.
import Mocha from 'mocha';

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      // Registered after the spec reporter's epilogue, so this is the last line.
      console.log(`tests: ${s.passes} passed, ${s.failures} failed, ${s.pending} skipped`);
    });
  }
}

export = SummaryReporter;
