// Loaded by mocha before every test file (see .mocharc.json).
import helper from 'node-red-node-test-helper';

helper.init(require.resolve('node-red'));
