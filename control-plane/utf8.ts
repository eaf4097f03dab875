// Text input is UTF-8, decoded strictly: invalid bytes are refused, saying where, rather than
// stored as U+FFFD. One decoder for the HTTP API's bodies and the CLI's files and stdin; it has no
// dependencies, so the CLI loads it at no cost.

export type Utf8Result =
  | { ok: true; text: string }
  /** Where the first invalid sequence starts: 0-based byte offset, 1-based line; `byte` is its first byte. */
  | { ok: false; offset: number; line: number; byte: number };

const strict = new TextDecoder("utf-8", { fatal: true });
// Keeps a BOM, so that offsets counted in the decoded text match the bytes.
const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

/** The text of `bytes` (without a leading BOM), or where they stop being UTF-8. */
export function decodeUtf8(bytes: Uint8Array | ArrayBuffer): Utf8Result {
  try {
    return { ok: true, text: strict.decode(bytes) };
  } catch {
    return { ok: false, ...firstInvalid(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) };
  }
}

/** "byte 0xff at offset 12 (line 2)", to follow "… is not valid UTF-8: ". */
export function describeInvalidUtf8(result: { offset: number; line: number; byte: number }): string {
  return `byte 0x${result.byte.toString(16).padStart(2, "0")} at offset ${result.offset} (line ${result.line})`;
}

/**
 * The lenient decoder turns each invalid sequence into one U+FFFD and leaves the valid text before it
 * as it was, so the bytes of that text are where the sequence starts; a U+FFFD the input really holds
 * (EF BF BD) is skipped.
 */
function firstInvalid(bytes: Uint8Array): { offset: number; line: number; byte: number } {
  const text = lenient.decode(bytes);
  let offset = 0;
  let line = 1;
  let from = 0;
  for (let at = text.indexOf("\uFFFD"); at >= 0; at = text.indexOf("\uFFFD", at + 1)) {
    const valid = text.slice(from, at);
    offset += encoder.encode(valid).length;
    line += valid.split("\n").length - 1;
    from = at;
    if (!(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)) {
      return { offset, line, byte: bytes[offset] ?? 0 };
    }
  }
  // Unreachable: the strict decoder failed, so some U+FFFD stands for invalid bytes.
  return { offset: bytes.length, line, byte: 0 };
}
