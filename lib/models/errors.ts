/** A model could not be read, understood or started; the message says what and where. */
export class ModelLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelLoadError';
  }
}

/** The named model has no version in the store yet (e.g. before its first training): wait for it. */
export class ModelNotInStoreYet extends ModelLoadError {
  constructor(readonly modelName: string) {
    super(`no model named ${modelName} in the store yet`);
    this.name = 'ModelNotInStoreYet';
  }
}
