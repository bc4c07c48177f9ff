/**
 * Preprocessing: numeric input parsing (every input shape of the message contracts), scaling
 * (min-max, z-score; fixed or learned), running statistics and sliding windows.
 */
export * from './numeric-input';
export * from './scaling';
export * from './running-stats';
export * from './window';
export * from './normaliser';
export { sizeOf, shapeText, nestedShape, nest } from './shape';
