// Drives Debian's Chromium (headless) through sign-in, cookie auth, auto-refresh and logout, from a
// page served on http://localhost:3000, against the service on http://localhost:8080.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';

// RFC 6238 (SHA-1, 6 digits, 30 s): what an authenticator app shows, for the two-factor flow
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
function totp(secret, stepOffset = 0) {
  const step = Math.floor(Date.now() / 1000 / 30) + stepOffset;
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

const API = process.env.API ?? 'http://localhost:8080';
const ACCESS_TTL = Number(process.env.ACCESS_TTL ?? 2);
const page_html = fs.readFileSync(path.join(import.meta.dirname, 'site', 'index.html'), 'utf8')
  .replace('<script>', `<script>window.API = ${JSON.stringify(API)};`);

function serve(port) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page_html);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: ${JSON.stringify(detail)}`);
  }
}

const allowed = await serve(3000);
const foreign = await serve(3001);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto('http://localhost:3000/');
  const api = (method, p, body) => page.evaluate(([m, pp, b]) => window.api(m, pp, b), [method, p, body]);

  const email = `browser-${Date.now()}@example.com`;
  const password = 'correct horse battery staple';
  const signUp = await api('POST', '/api/v1/public/users/sign_up', { email, password, first_name: 'Browser' });
  check('sign up from another origin', signUp.status === 201, signUp);

  const login = await api('POST', '/api/v1/public/users/login', { email, password });
  check('sign in sets the session cookies', login.status === 200, login);

  const jsCookies = await page.evaluate(() => document.cookie);
  check('document.cookie shows no token', !jsCookies.includes('access_token') && !jsCookies.includes('refresh_token'),
        jsCookies);

  const me = await api('GET', '/api/v1/private/users/me');
  check('users/me with the cookie', me.status === 200 && me.body?.email === email, me);

  // let the access token (and its cookie) expire: the refresh cookie renews it on the fly
  await page.waitForTimeout((ACCESS_TTL + 1) * 1000);
  const renewed = await api('GET', '/api/v1/private/users/me');
  check('users/me after the access token expired (auto-refresh)', renewed.status === 200, renewed);
  const again = await api('GET', '/api/v1/private/users/me');
  check('the rotated cookies work', again.status === 200, again);

  // a page on an origin not in server.cors_origins cannot use the session
  const other = await context.newPage();
  await other.goto('http://localhost:3001/');
  const forged = await other.evaluate(() => window.api('PUT', '/api/v1/private/users/logout'));
  check('a cross-origin write from a foreign origin is refused', forged.status === 0 || forged.status === 403, forged);
  const stillIn = await api('GET', '/api/v1/private/users/me');
  check('the session survived the foreign page', stillIn.status === 200, stillIn);

  const logout = await api('PUT', '/api/v1/private/users/logout');
  check('logout', logout.status === 204, logout);
  const after = await api('GET', '/api/v1/private/users/me');
  check('users/me after logout is 401', after.status === 401 && after.body?.code === 'unauthenticated', after);

  // two-factor: enrol, confirm with the app's code, sign out, sign in with a code
  const relogin = await api('POST', '/api/v1/public/users/login', { email, password });
  check('sign in again', relogin.status === 200, relogin);
  const enrol = await api('POST', '/api/v1/private/users/me/mfa/totp');
  check('two-factor enrolment', enrol.status === 201 && enrol.body?.otpauth_uri?.startsWith('otpauth://totp/'), enrol);
  const secret = enrol.body?.secret ?? '';
  const confirm = await api('POST', '/api/v1/private/users/me/mfa/totp/confirm', { code: totp(secret) });
  check('confirmed with the app\'s code: ten recovery codes', confirm.status === 200 && confirm.body?.recovery_codes?.length === 10,
        confirm);
  const signOut = await api('PUT', '/api/v1/private/users/logout');
  check('sign out', signOut.status === 204, signOut);
  const first = await api('POST', '/api/v1/public/users/login', { email, password });
  check('the password alone asks for a code', first.status === 200 && first.body?.mfa_required === true, first);
  const between = await api('GET', '/api/v1/private/users/me');
  check('no session between the two steps', between.status === 401, between);
  // the confirmation used this step's code: the next step's is accepted (one step of skew)
  const second = await api('POST', '/api/v1/public/users/login/mfa', { mfa_token: first.body?.mfa_token, code: totp(secret, 1) });
  check('the code completes the sign-in', second.status === 200 && second.body?.user?.email === email, second);
  const meMfa = await api('GET', '/api/v1/private/users/me');
  check('users/me after a two-factor sign-in', meMfa.status === 200, meMfa);
  const seances = await api('GET', '/api/v1/private/users/seances');
  const current = seances.body?.items?.find((s) => s.current);
  check('the session says it signed in with a password and a code',
        JSON.stringify(current?.amr) === JSON.stringify(['pwd', 'otp']), seances);

  // passkeys: a virtual platform authenticator (CTAP2, internal, resident keys, user verification)
  await page.bringToFront(); // WebAuthn needs the focused page
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  const regOptions = await api('POST', '/api/v1/private/users/me/passkeys/registration/options');
  check('passkey registration options', regOptions.status === 200
        && regOptions.body?.public_key?.authenticatorSelection?.residentKey === 'required', regOptions);
  const created = await page.evaluate((o) => window.createPasskey(o), regOptions.body?.public_key);
  check('Chromium creates the passkey', !!created.credential, created);
  const registered = await api('POST', '/api/v1/private/users/me/passkeys/registration',
    { challenge_id: regOptions.body?.challenge_id, credential: created.credential, name: 'Chromium' });
  check('the service registers it', registered.status === 201 && registered.body?.name === 'Chromium', registered);
  const outAgain = await api('PUT', '/api/v1/private/users/logout');
  check('sign out before the passkey sign-in', outAgain.status === 204, outAgain);
  const signInOptions = await api('POST', '/api/v1/public/users/passkey/options', {});
  check('passkey sign-in options name nobody', signInOptions.status === 200
        && !(signInOptions.body?.public_key?.allowCredentials?.length), signInOptions);
  const asserted = await page.evaluate((o) => window.usePasskey(o), signInOptions.body?.public_key);
  check('Chromium signs with the passkey', !!asserted.credential, asserted);
  const passkeyLogin = await api('POST', '/api/v1/public/users/passkey/login',
    { challenge_id: signInOptions.body?.challenge_id, credential: asserted.credential });
  check('the passkey signs in without a password or a code',
        passkeyLogin.status === 200 && passkeyLogin.body?.user?.email === email, passkeyLogin);
  const passkeySeances = await api('GET', '/api/v1/private/users/seances');
  const passkeySession = passkeySeances.body?.items?.find((s) => s.current);
  check('the session says it signed in with webauthn',
        JSON.stringify(passkeySession?.amr) === JSON.stringify(['webauthn']), passkeySeances);
} catch (e) {
  check('browser run', false, String(e));
} finally {
  await browser.close();
  allowed.close();
  foreign.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
