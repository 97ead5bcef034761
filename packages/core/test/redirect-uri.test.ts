import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cspSourceFor, matchRedirectUri } from '../src/index.ts';

const REGISTERED = ['http://127.0.0.1:7000/callback', 'https://app.example/cb?tenant=1'];

test('exact match', () => {
  assert.equal(matchRedirectUri('http://127.0.0.1:7000/callback', REGISTERED), 'http://127.0.0.1:7000/callback');
  assert.equal(matchRedirectUri('https://app.example/cb?tenant=1', REGISTERED), 'https://app.example/cb?tenant=1');
});

test('open-redirect attempts and near misses never match', () => {
  for (const attempt of [
    'https://evil/',
    'http://127.0.0.1:7000/callback/../x',
    'http://127.0.0.1:7000/callback/%2e%2e/x',
    'http://127.0.0.1:7000@evil/',
    'http://127.0.0.1:7000@evil/callback',
    'http://evil@127.0.0.1:7000/callback',
    'http://127.0.0.1:7000/callback?x=1',
    'http://127.0.0.1:7000/callback#frag',
    'http://127.0.0.1:7000/Callback',
    'HTTP://127.0.0.1:7000/callback',
    'http://127.0.0.1:7000/callback/',
    'http://127.0.0.1:7001/callback',
    'http://localhost:7000/callback',
    'https://app.example/cb',
    'https://app.example/cb?tenant=1&x=2',
    ' http://127.0.0.1:7000/callback',
    '',
  ]) {
    assert.equal(matchRedirectUri(attempt, REGISTERED), undefined, attempt);
  }
});

test('RFC 8252 §7.3: a portless loopback registration matches any port, and only that', () => {
  const registered = ['http://127.0.0.1/cb', 'http://[::1]/cb'];
  // The redirect goes where the app listens: the requested URI, its port included.
  assert.equal(matchRedirectUri('http://127.0.0.1:51234/cb', registered), 'http://127.0.0.1:51234/cb');
  assert.equal(matchRedirectUri('http://[::1]:8080/cb', registered), 'http://[::1]:8080/cb');
  assert.equal(matchRedirectUri('http://127.0.0.1:51234/cb/../x', registered), undefined);
  assert.equal(matchRedirectUri('http://127.0.0.1:0/cb', registered), undefined);
  assert.equal(matchRedirectUri('http://127.0.0.1:080/cb', registered), undefined);
  // A registration with a port is exact.
  assert.equal(matchRedirectUri('http://127.0.0.1:7001/callback', ['http://127.0.0.1:7000/callback']), undefined);
});

test('form-action sources', () => {
  assert.equal(cspSourceFor('http://127.0.0.1:7000/callback'), 'http://127.0.0.1:7000');
  assert.equal(cspSourceFor('com.example.app:/cb'), 'com.example.app:');
  assert.equal(cspSourceFor('not a url'), undefined);
});
