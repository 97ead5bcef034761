import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCodeVerifier, isS256Challenge, s256Challenge, verifyPkce } from '../src/index.ts';

// RFC 7636 Appendix B.
const VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

test('S256 matches the RFC 7636 Appendix B example', () => {
  assert.equal(s256Challenge(VERIFIER), CHALLENGE);
  assert.equal(verifyPkce(VERIFIER, CHALLENGE), true);
});

test('a wrong verifier, or a plain challenge, does not verify', () => {
  assert.equal(verifyPkce(`${VERIFIER.slice(0, -1)}l`, CHALLENGE), false);
  // `plain`: the challenge is the verifier itself; it must never verify as S256.
  assert.equal(verifyPkce(VERIFIER, VERIFIER), false);
});

test('verifier and challenge shapes (RFC 7636 §4.1, §4.2)', () => {
  assert.equal(isCodeVerifier('a'.repeat(42)), false);
  assert.equal(isCodeVerifier('a'.repeat(43)), true);
  assert.equal(isCodeVerifier('a'.repeat(128)), true);
  assert.equal(isCodeVerifier('a'.repeat(129)), false);
  assert.equal(isCodeVerifier(`${'a'.repeat(42)}+`), false);
  assert.equal(isS256Challenge(CHALLENGE), true);
  assert.equal(isS256Challenge(`${CHALLENGE}=`), false);
  assert.equal(verifyPkce('short', CHALLENGE), false);
});
