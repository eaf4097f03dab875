// What the CA throws. Classes, so that the later API layer maps them with instanceof, as it does the
// store's: CaInputError is the caller's input (400, naming the field or file), RotationError a step the
// rotation's state does not allow (409), CaStateError a CA that cannot work as it is configured (500,
// or a refused start).

/** Input the CA refuses: a CSR, a validity, an operator's certificate or key. */
export class CaInputError extends Error {
  /** The field or file at fault, e.g. "csr.publicKey" or "/etc/wasmesh/cacerts/ca-key.pem". */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "CaInputError";
    this.field = field;
  }
}

/** The CA cannot work as it is stored and configured: a key it cannot open, another trust domain. */
export class CaStateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CaStateError";
  }
}

/** A rotation step the current authorities do not allow; nothing was changed. */
export class RotationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RotationError";
  }
}
