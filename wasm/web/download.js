// The demo page's downloads (loaded before app.js): each file with
// progress, checked against the SHA-256 the server lists for it, and kept
// in the browser's Cache API by that hash.
"use strict";

const mib = (n) => (n / (1 << 20)).toFixed(1) + " MiB";

// sha256Hex is the hex SHA-256 of bytes; null where the browser has no
// crypto.subtle (outside a secure context, where there is no Cache API
// either).
async function sha256Hex(bytes) {
  if (!window.crypto || !crypto.subtle) return null;
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...d].map((x) => x.toString(16).padStart(2, "0")).join("");
}

// download fetches url once with progress (init: fetch's options); an
// HTTP error shows the server's own message.
async function download(url, what, expect, onBytes, init) {
  let resp;
  try { resp = await fetch(url, init); } catch (e) { throw new Error(`Could not download ${what}: ${e.message}`); }
  if (!resp.ok) {
    let body = "";
    try { body = (await resp.text()).trim().slice(0, 300); } catch (e) { body = ""; }
    throw new Error(`Could not download ${what}: HTTP ${resp.status} ${resp.statusText}${body ? ": " + body : ""}`);
  }
  const parts = [];
  let n = 0;
  const reader = resp.body.getReader();
  for (;;) {
    let r;
    try { r = await reader.read(); } catch (e) { throw new Error(`Download of ${what} broke off after ${mib(n)}: ${e.message}`); }
    if (r.done) break;
    parts.push(r.value);
    n += r.value.length;
    onBytes(r.value.length);
  }
  if (expect >= 0 && n !== expect) throw new Error(`Download of ${what} is incomplete: ${n} of ${expect} bytes`);
  const bytes = new Uint8Array(n);
  let off = 0;
  for (const p of parts) { bytes.set(p, off); off += p.length; }
  return bytes;
}

// fetchBytes downloads url with progress. With hash (the file's SHA-256
// hex prefix from the manifest) the bytes must match it: a mismatch is
// fetched once more past the HTTP cache (which may hold the bad copy),
// then refused, so corrupt bytes are neither loaded nor cached. cacheKey
// (optional) stores the checked bytes in the Cache API so a reload reads
// them from disk.
async function fetchBytes(url, what, expect, onBytes, cacheKey, hash) {
  let cache = null;
  if (cacheKey && window.caches) {
    try { cache = await caches.open("chameleon-model"); } catch (e) { cache = null; } // e.g. not a secure context
  }
  if (cache) {
    const hit = await cache.match(cacheKey);
    if (hit) {
      const b = new Uint8Array(await hit.arrayBuffer());
      // A copy an older page stored unchecked must match the hash too.
      const ok = (expect < 0 || b.length === expect) && (!hash || ((await sha256Hex(b)) || hash).startsWith(hash));
      if (ok) { onBytes(b.length); return { bytes: b, cached: true }; }
      await cache.delete(cacheKey);
    }
  }
  let bytes = await download(url, what, expect, onBytes);
  if (hash) {
    let sum = await sha256Hex(bytes);
    if (sum !== null && !sum.startsWith(hash)) {
      onBytes(-bytes.length); // the progress bar counts the second try afresh
      bytes = await download(url, what, expect, onBytes, { cache: "reload" });
      sum = await sha256Hex(bytes);
      if (!sum.startsWith(hash)) {
        throw new Error(`Download of ${what} is corrupt: its SHA-256 does not match the server's (twice); reload the page, or restart chameleon demo`);
      }
    }
  }
  if (cache) {
    const old = await cache.keys();
    for (const k of old) if (new URL(k.url).pathname === new URL(cacheKey, location.href).pathname) await cache.delete(k);
    await cache.put(cacheKey, new Response(bytes));
  }
  return { bytes, cached: false };
}
