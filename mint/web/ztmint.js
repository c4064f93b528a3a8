// The ztmint enrollment and mint page.
//
// Enrollment: POST /register, navigator.credentials.create, POST /register/complete.
// Minting: POST /assert, navigator.credentials.get, POST /mint, then the token and receipt
// are POSTed to the loopback callback of `ztmint token --browser` and dropped. The page
// shows the credential id, jti and expiry, and never writes a token or receipt into the
// document. WebAuthn JSON forms follow WebAuthn Level 3 sections 5.1.1 and 5.4-5.5.
"use strict";

const CALLBACK_HOSTS = ["127.0.0.1", "localhost"];
const STATE_PATTERN = /^[A-Za-z0-9_-]{16,128}$/;
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/;

// Decode unpadded base64url (RFC 4648 section 5) and reject any other spelling, so that a
// value that does not round-trip is an error here rather than a puzzle at the mint.
function base64urlToBytes(text) {
  if (typeof text !== "string" || !BASE64URL_PATTERN.test(text) || text.length % 4 === 1) {
    throw new Error("the mint sent a value that is not base64url");
  }
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (text.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  if (bytesToBase64url(bytes) !== text) {
    throw new Error("the mint sent a base64url value that is not canonical");
  }
  return bytes;
}

function bytesToBase64url(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  let binary = "";
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeDescriptors(descriptors) {
  return (descriptors || []).map((descriptor) => ({
    ...descriptor,
    id: base64urlToBytes(descriptor.id),
  }));
}

function creationOptionsFromJson(options) {
  return {
    ...options,
    challenge: base64urlToBytes(options.challenge),
    user: { ...options.user, id: base64urlToBytes(options.user.id) },
    excludeCredentials: decodeDescriptors(options.excludeCredentials),
  };
}

function requestOptionsFromJson(options) {
  return {
    ...options,
    challenge: base64urlToBytes(options.challenge),
    allowCredentials: decodeDescriptors(options.allowCredentials),
  };
}

function registrationToJson(credential) {
  const json = {
    id: credential.id,
    rawId: bytesToBase64url(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: bytesToBase64url(credential.response.clientDataJSON),
      attestationObject: bytesToBase64url(credential.response.attestationObject),
    },
    clientExtensionResults: credential.getClientExtensionResults(),
  };
  if (credential.authenticatorAttachment) {
    json.authenticatorAttachment = credential.authenticatorAttachment;
  }
  return json;
}

function assertionToJson(credential) {
  const response = {
    clientDataJSON: bytesToBase64url(credential.response.clientDataJSON),
    authenticatorData: bytesToBase64url(credential.response.authenticatorData),
    signature: bytesToBase64url(credential.response.signature),
  };
  if (credential.response.userHandle && credential.response.userHandle.byteLength > 0) {
    response.userHandle = bytesToBase64url(credential.response.userHandle);
  }
  const json = {
    id: credential.id,
    rawId: bytesToBase64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
  };
  if (credential.authenticatorAttachment) {
    json.authenticatorAttachment = credential.authenticatorAttachment;
  }
  return json;
}

// Return the callback URL when it is one the mint allows, or null. The server checks the
// same rules when it serves the page, and the Content-Security-Policy (connect-src) blocks
// any other destination, so this is the third of three checks.
function checkCallbackUrl(text, state) {
  if (!text || !state || !STATE_PATTERN.test(state)) {
    return null;
  }
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  const allowed =
    url.protocol === "http:" &&
    CALLBACK_HOSTS.includes(url.hostname) &&
    url.port !== "" &&
    url.username === "" &&
    url.password === "" &&
    url.search === "" &&
    url.hash === "";
  return allowed ? url : null;
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    payload = {};
  }
  if (!response.ok) {
    const reason = payload.error || `http_${response.status}`;
    throw new Error(`${path} rejected: ${reason}: ${payload.message || response.statusText}`);
  }
  return payload;
}

function describeWebAuthnError(error) {
  if (error instanceof DOMException && error.name === "NotAllowedError") {
    return "the security key operation was cancelled or timed out; try again";
  }
  if (error instanceof DOMException && error.name === "InvalidStateError") {
    return "this security key is already enrolled";
  }
  return error.message || String(error);
}

function setStatus(state, text) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.textContent = text;
}

function showResult(entries) {
  const list = document.getElementById("result");
  list.replaceChildren();
  for (const [term, value] of entries) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.id = `result-${term.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
    list.append(dt, dd);
  }
}

function field(id) {
  return document.getElementById(id).value.trim();
}

async function enroll() {
  const user = field("enroll-user");
  const invitation = field("enroll-invitation");
  setStatus("busy", "Touch your security key to enroll it.");
  showResult([]);
  try {
    // A mint with open enrollment (development only) needs no invitation.
    const body = invitation ? { user, invitation } : { user };
    const started = await postJson("/register", body);
    const credential = await navigator.credentials.create({
      publicKey: creationOptionsFromJson(started.publicKey),
    });
    const stored = await postJson("/register/complete", {
      challenge_id: started.challenge_id,
      credential: registrationToJson(credential),
    });
    showResult([
      ["User", stored.user],
      ["Credential id", stored.credential_id],
      ["Attestation type", stored.attestation_type],
    ]);
    setStatus("done", "Security key enrolled.");
  } catch (error) {
    setStatus("error", `Enrollment failed: ${describeWebAuthnError(error)}`);
  }
}

async function deliverToCli(callback, delivery) {
  let response;
  try {
    response = await fetch(callback.href, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(delivery),
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new Error("the ztmint CLI is not listening any more; run ztmint token --browser again");
  }
  if (!response.ok) {
    throw new Error(`the ztmint CLI rejected the token (HTTP ${response.status})`);
  }
}

async function mintToken(callback, state) {
  const request = {
    scopes: field("mint-scopes").split(/\s+/).filter((scope) => scope !== ""),
    audience: field("mint-audience"),
    ttl_seconds: Number.parseInt(field("mint-ttl"), 10),
  };
  setStatus("busy", "Touch your security key to mint the token.");
  showResult([]);
  try {
    const started = await postJson("/assert", { user: field("mint-user"), ...request });
    const credential = await navigator.credentials.get({
      publicKey: requestOptionsFromJson(started.publicKey),
    });
    const minted = await postJson("/mint", {
      challenge_id: started.challenge_id,
      ...request,
      assertion: assertionToJson(credential),
    });
    await deliverToCli(callback, {
      state,
      token: minted.token,
      receipt: minted.receipt,
      jti: minted.jti,
      expires_at: minted.expires_at,
    });
    showResult([
      ["jti", minted.jti],
      ["Expires", new Date(minted.expires_at * 1000).toISOString()],
      ["Audit index", String(minted.audit_index)],
    ]);
    setStatus("done", "Token sent to the ztmint CLI. You can close this tab.");
  } catch (error) {
    setStatus("error", `Minting failed: ${describeWebAuthnError(error)}`);
  }
}

function prefill(params) {
  const user = params.get("user") || "";
  document.getElementById("enroll-user").value = user;
  document.getElementById("mint-user").value = user;
  document.getElementById("mint-scopes").value = params.get("scope") || "";
  document.getElementById("mint-audience").value = params.get("aud") || "";
  if (params.get("ttl")) {
    document.getElementById("mint-ttl").value = params.get("ttl");
  }
}

function start() {
  const params = new URLSearchParams(window.location.search);
  prefill(params);
  document.getElementById("enroll-button").addEventListener("click", enroll);

  const state = params.get("state");
  const callback = checkCallbackUrl(params.get("callback"), state);
  const note = document.getElementById("callback-note");
  if (callback === null && params.has("callback")) {
    note.textContent =
      "The callback address is not an http address on 127.0.0.1 or localhost, " +
      "so this page will not send a token there.";
    return;
  }
  if (callback === null) {
    return;
  }
  note.textContent = `The token goes to the ztmint CLI listening on ${callback.host}.`;
  const button = document.getElementById("mint-button");
  button.disabled = false;
  button.addEventListener("click", () => mintToken(callback, state));
}

if (!window.isSecureContext || !window.PublicKeyCredential) {
  document.addEventListener("DOMContentLoaded", () =>
    setStatus("error", "This browser does not offer WebAuthn here; open the page over https or localhost."),
  );
} else {
  document.addEventListener("DOMContentLoaded", start);
}
