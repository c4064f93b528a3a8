export { KeySetError, Reason, VerifyError } from "./errors.js";
export { KeySet } from "./keys.js";
export { verifyReceipt, verifyToken } from "./verify.js";
