/**
 * observe/series.ts: the label-bound counters and histograms of the token service's per-request
 * metrics, read back through a prom-client Registry in the text format Prometheus scrapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { BoundCounter, BoundHistogram } from '../src/observe/series.ts';

test('a histogram puts a value equal to a bound in that bucket (le is inclusive), counts every value in +Inf, sums them', async () => {
  const registry = new Registry();
  const histogram = new BoundHistogram({ name: 'x_seconds', help: 'X.', labelNames: ['op'], buckets: [0.1, 0.01, 1], registers: [registry] });
  const series = histogram.labels('sign');
  for (const value of [0.005, 0.01, 0.5, 1, 7]) series.observe(value);
  series.observe(Number.NaN);
  assert.equal(histogram.labels('sign'), series, 'the same label values give the same series');
  const text = await registry.metrics();
  assert.match(text, /^# HELP x_seconds X\.\n# TYPE x_seconds histogram$/m);
  for (const line of ['x_seconds_bucket{op="sign",le="0.01"} 2', 'x_seconds_bucket{op="sign",le="0.1"} 2', 'x_seconds_bucket{op="sign",le="1"} 4', 'x_seconds_bucket{op="sign",le="+Inf"} 5', 'x_seconds_sum{op="sign"} 8.515', 'x_seconds_count{op="sign"} 5']) {
    assert.ok(text.includes(line), `${line} in\n${text}`);
  }
});

test('a counter counts per label values; a wrong number of label values is a TypeError', async () => {
  const registry = new Registry();
  const counter = new BoundCounter({ name: 'y_total', help: 'Y.', labelNames: ['tenant', 'result'], registers: [registry] });
  counter.labels('contoso', 'ok').inc();
  counter.labels('contoso', 'ok').inc(2);
  counter.labels('contoso', 'rate_limited').inc();
  assert.throws(() => counter.labels('contoso'), TypeError);
  const text = await registry.metrics();
  assert.ok(text.includes('y_total{tenant="contoso",result="ok"} 3'), text);
  assert.ok(text.includes('y_total{tenant="contoso",result="rate_limited"} 1'), text);
  assert.match(text, /# TYPE y_total counter/);
  assert.equal((await registry.getMetricsAsJSON()).find((m) => m.name === 'y_total')?.aggregator, 'sum', 'summed across serve --workers');
});

test('series are told apart by every label value, whatever the values share; reset forgets them all', async () => {
  const registry = new Registry();
  const counter = new BoundCounter({ name: 'z_total', help: 'Z.', labelNames: ['a', 'b'], registers: [registry] });
  counter.labels('x', 'yz').inc();
  counter.labels('xy', 'z').inc(2);
  counter.labels('x', 'y').inc(3);
  assert.notEqual(counter.labels('x', 'yz'), counter.labels('xy', 'z'));
  const text = await registry.metrics();
  for (const line of ['z_total{a="x",b="yz"} 1', 'z_total{a="xy",b="z"} 2', 'z_total{a="x",b="y"} 3']) assert.ok(text.includes(line), `${line} in\n${text}`);
  counter.reset();
  assert.doesNotMatch(await registry.metrics(), /z_total\{/);
  assert.equal(counter.labels('x', 'yz').value, 0, 'a series made again after reset starts at 0');
});
