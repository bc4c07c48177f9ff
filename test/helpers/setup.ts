// Loaded by mocha before every test file (see .mocharc.json).
import helper from 'node-red-node-test-helper';
import { nodeRedMain } from './node-red-path';

// EDGE_NODE_RED_PATH selects another Node-RED install (scripts/test-node22.sh uses Node-RED 5).
helper.init(nodeRedMain());
