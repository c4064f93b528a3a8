import { VerifyError } from "./errors.js";

const BASE64URL_ALPHABET = /^[A-Za-z0-9_-]*$/;

/**
 * Decode canonical base64url without padding (RFC 7515 section 2). Padding, '+', '/', a
 * length of 1 mod 4 and non-zero unused bits are rejected, so one token has one spelling.
 * Buffer.from(text, "base64url") alone would accept all of those.
 *
 * @param {string} segment
 * @param {string} reason rejection code to throw with
 * @returns {Buffer}
 */
export function decodeSegment(segment, reason) {
  if (!BASE64URL_ALPHABET.test(segment)) {
    throw new VerifyError(reason, "base64url segment has characters outside the URL-safe alphabet");
  }
  if (segment.length % 4 === 1) {
    throw new VerifyError(reason, "base64url segment has an impossible length");
  }
  const data = Buffer.from(segment, "base64url");
  // Re-encoding exposes non-zero unused bits: "AB" and "AC" decode to the same byte.
  if (data.toString("base64url") !== segment) {
    throw new VerifyError(reason, "base64url segment has non-zero unused bits");
  }
  return data;
}

/**
 * Split a compact JWS (RFC 7515 section 7.1) into exactly three segments.
 *
 * @param {string} text
 * @param {string} reason
 * @returns {[string, string, string]}
 */
export function splitCompact(text, reason) {
  const parts = text.split(".");
  if (parts.length === 5) {
    throw new VerifyError(reason, "five segments: this is a JWE, not a JWS");
  }
  if (parts.length !== 3) {
    throw new VerifyError(reason, `compact JWS needs 3 segments, found ${parts.length}`);
  }
  return [parts[0], parts[1], parts[2]];
}

/** A JSON number kept as its literal text, so 5, 5.0 and 5e0 stay distinguishable. */
export class JsonNumber {
  /** @param {string} text */
  constructor(text) {
    this.text = text;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const MAX_DEPTH = 64;

/**
 * Parse one JSON object (RFC 8259) from UTF-8 bytes, rejecting duplicate member names
 * (compared after unescaping), invalid UTF-8, a byte order mark, NaN and trailing data.
 * Objects come back with a null prototype, so a member named "__proto__" is plain data.
 *
 * JSON.parse keeps the last of duplicate names and turns 5e0 into 5; both would let this
 * verifier read a token differently from the Python and Go ones.
 *
 * @param {Uint8Array} data
 * @param {string} reason
 * @returns {Record<string, unknown>}
 */
export function parseObject(data, reason) {
  let text;
  try {
    text = UTF8.decode(data);
  } catch {
    throw new VerifyError(reason, "segment is not valid UTF-8");
  }
  let value;
  try {
    const parser = new StrictJsonParser(text);
    value = parser.parseDocument();
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw new VerifyError(reason, `segment is not valid JSON: ${error.message}`);
    }
    throw error;
  }
  if (
    value === null ||
    typeof value !== "object" ||
    Array.isArray(value) ||
    value instanceof JsonNumber
  ) {
    throw new VerifyError(reason, "segment is JSON but not an object");
  }
  return value;
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

class StrictJsonParser {
  constructor(text) {
    this.text = text;
    this.position = 0;
  }

  parseDocument() {
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.position !== this.text.length) {
      this.fail("data after the JSON value");
    }
    return value;
  }

  fail(message) {
    throw new SyntaxError(`${message} at offset ${this.position}`);
  }

  skipWhitespace() {
    while (" \t\n\r".includes(this.text[this.position] ?? "x")) {
      this.position += 1;
    }
  }

  parseValue(depth) {
    if (depth > MAX_DEPTH) {
      this.fail(`nesting deeper than ${MAX_DEPTH}`);
    }
    this.skipWhitespace();
    const character = this.text[this.position];
    if (character === "{") return this.parseObject(depth);
    if (character === "[") return this.parseArray(depth);
    if (character === '"') return this.parseString();
    for (const [literal, value] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ]) {
      if (this.text.startsWith(literal, this.position)) {
        this.position += literal.length;
        return value;
      }
    }
    NUMBER.lastIndex = this.position;
    const match = NUMBER.exec(this.text);
    if (match === null) {
      this.fail("unexpected character");
    }
    this.position += match[0].length;
    return new JsonNumber(match[0]);
  }

  parseObject(depth) {
    const object = Object.create(null);
    this.position += 1;
    this.skipWhitespace();
    if (this.text[this.position] === "}") {
      this.position += 1;
      return object;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.position] !== '"') this.fail("expected a member name");
      const name = this.parseString();
      if (Object.hasOwn(object, name)) this.fail(`duplicate member name ${JSON.stringify(name)}`);
      this.skipWhitespace();
      if (this.text[this.position] !== ":") this.fail("expected ':'");
      this.position += 1;
      object[name] = this.parseValue(depth + 1);
      this.skipWhitespace();
      const separator = this.text[this.position];
      this.position += 1;
      if (separator === "}") return object;
      if (separator !== ",") this.fail("expected ',' or '}'");
    }
  }

  parseArray(depth) {
    const elements = [];
    this.position += 1;
    this.skipWhitespace();
    if (this.text[this.position] === "]") {
      this.position += 1;
      return elements;
    }
    for (;;) {
      elements.push(this.parseValue(depth + 1));
      this.skipWhitespace();
      const separator = this.text[this.position];
      this.position += 1;
      if (separator === "]") return elements;
      if (separator !== ",") this.fail("expected ',' or ']'");
    }
  }

  parseString() {
    this.position += 1;
    let result = "";
    for (;;) {
      const character = this.text[this.position];
      if (character === undefined) this.fail("unterminated string");
      this.position += 1;
      if (character === '"') return result;
      if (character < " ") this.fail("control character in string");
      if (character !== "\\") {
        result += character;
        continue;
      }
      const escape = this.text[this.position];
      this.position += 1;
      if (escape === "u") {
        const hex = this.text.slice(this.position, this.position + 4);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail("invalid \\u escape");
        result += String.fromCharCode(parseInt(hex, 16));
        this.position += 4;
      } else if (Object.hasOwn(ESCAPES, escape)) {
        result += ESCAPES[escape];
      } else {
        this.fail("invalid escape");
      }
    }
  }
}

// I-JSON (RFC 7493 section 2.2) limits interoperable integers to the exact range of an
// IEEE 754 double, which is Number.isSafeInteger's range. Times before the epoch have no use
// here, so the range starts at 0, as in the Python verifier.
const INTEGER_LITERAL = /^-?(?:0|[1-9][0-9]*)$/;

/**
 * Return the value of a JSON number written as an integer literal (no fraction, no exponent)
 * from 0 to 2^53 - 1, or undefined for anything else.
 *
 * @param {unknown} value
 * @returns {number | undefined}
 */
export function safeInteger(value) {
  if (!(value instanceof JsonNumber) || !INTEGER_LITERAL.test(value.text)) {
    return undefined;
  }
  const parsed = Number(value.text);
  return Number.isSafeInteger(parsed) && parsed >= 0 ? parsed : undefined;
}
