/**
 * node-red-contrib-edge-ai as a library, usable from a plain script without Node-RED. Each
 * area is a namespace, e.g. `const { anomaly } = require('node-red-contrib-edge-ai');
 * new anomaly.AnomalyDetector({ method: 'auto' })`.
 */
export * from './errors';
export * as sensors from './sensors';
export * as preprocess from './preprocess';
export * as models from './models';
export * as train from './train';
export * as anomaly from './anomaly';
export { SeededRandom, seededRandom, gaussian } from './util/random';
export * as fleet from './fleet';
export { MAX_CHANNELS, listText, itemText } from './util/text';
